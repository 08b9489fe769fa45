package registry_test

import (
	"fmt"

	"github.com/ferry-oci/ferry/internal/registry"
)

func ExampleParseReference() {
	for _, s := range []string{"nginx:1.25", "index.docker.io/user/app", "127.0.0.1:5000/tiny/app:v1"} {
		ref, err := registry.ParseReference(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(ref.Registry, ref.Repository, ref.Reference, ref.Host())
	}
	// Output:
	// docker.io library/nginx 1.25 registry-1.docker.io
	// docker.io user/app  registry-1.docker.io
	// 127.0.0.1:5000 tiny/app v1 127.0.0.1:5000
}

func ExampleClient_CredentialSource() {
	env := map[string]string{
		"IMGPKG_REGISTRY_HOSTNAME_1": "reg.io/team",
		"IMGPKG_REGISTRY_USERNAME_1": "robot",
		"IMGPKG_REGISTRY_PASSWORD_1": "secret",
		"HOME":                       "/nonexistent",
	}
	c, err := registry.New(registry.Options{
		Username: "flag-user", Password: "flag-pass",
		Getenv: func(k string) string { return env[k] },
		Environ: func() []string {
			return []string{"IMGPKG_REGISTRY_HOSTNAME_1=reg.io/team", "IMGPKG_REGISTRY_USERNAME_1=robot", "IMGPKG_REGISTRY_PASSWORD_1=secret"}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.CredentialSource("reg.io", "team/app"))
	fmt.Println(c.CredentialSource("reg.io", "other/app"))
	// Output:
	// IMGPKG_REGISTRY_HOSTNAME_1
	// --registry-username flag
}
