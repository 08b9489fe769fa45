package lockfile_test

import (
	"errors"
	"fmt"

	"github.com/ferry-oci/ferry/lockfile"
)

func Example() {
	in := []byte(`---
apiVersion: imgpkg.carvel.dev/v1alpha1
kind: ImagesLock
images:
- image: index.docker.io/library/nginx@sha256:1111111111111111111111111111111111111111111111111111111111111111
  annotations:
    kbld.carvel.dev/id: nginx:1.25
`)
	lock, err := lockfile.ParseImagesLock("images.yml", in)
	if err != nil {
		fmt.Println(err)
		return
	}
	moved, err := lock.Relocate("reg.example.com/team/bundle")
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := moved.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(out))
	// Output:
	// ---
	// apiVersion: imgpkg.carvel.dev/v1alpha1
	// kind: ImagesLock
	// images:
	// - image: reg.example.com/team/bundle@sha256:1111111111111111111111111111111111111111111111111111111111111111
	//   annotations:
	//     kbld.carvel.dev/id: nginx:1.25
}

func ExampleFieldError() {
	in := []byte("apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: nginx:1.2\n")
	_, err := lockfile.ParseImagesLock("images.yml", in)
	var fe *lockfile.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field, errors.Is(err, lockfile.ErrInvalid))
	}
	fmt.Println(err)
	// Output:
	// images[0].image true
	// images.yml: field "images[0].image": "nginx:1.2" is a tag reference; lock files need digest references (REPO@sha256:...)
}

func ExampleKind() {
	in := []byte("apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: BundleLock\nbundle:\n  image: reg.io/b@sha256:1111111111111111111111111111111111111111111111111111111111111111\n")
	kind, err := lockfile.Kind("lock.yml", in)
	if err != nil {
		fmt.Println(err)
		return
	}
	switch kind {
	case lockfile.KindBundleLock:
		lock, err := lockfile.ParseBundleLock("lock.yml", in)
		fmt.Println(lock.Bundle.Image, err)
	case lockfile.KindImagesLock:
		fmt.Println("images lock")
	}
	// Output:
	// reg.io/b@sha256:1111111111111111111111111111111111111111111111111111111111111111 <nil>
}
