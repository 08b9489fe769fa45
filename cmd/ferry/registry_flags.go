package main

import (
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/ferry-oci/ferry/internal/registry"
)

// registryFlags are the --registry-* flags shared with imgpkg, with the same
// names, defaults and environment forms.
type registryFlags struct {
	caCertPaths           []string
	verifyCerts           bool
	insecure              bool
	username              string
	password              string
	token                 string
	anon                  bool
	responseHeaderTimeout time.Duration
	retryCount            int

	// fs is the command's flag set, where the root's --debug is found at
	// run time (see debugLog).
	fs *pflag.FlagSet
}

func (f *registryFlags) bind(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringSliceVar(&f.caCertPaths, "registry-ca-cert-path", nil, "Add CA certificates for registry API (format: /tmp/foo) (can be specified multiple times)")
	fs.BoolVar(&f.verifyCerts, "registry-verify-certs", true, "Set whether to verify server's certificate chain and host name")
	fs.BoolVar(&f.insecure, "registry-insecure", false, "Allow the use of http when interacting with registries")
	fs.StringVar(&f.username, "registry-username", "", "Set username for auth ($IMGPKG_USERNAME)")
	fs.StringVar(&f.password, "registry-password", "", "Set password for auth ($IMGPKG_PASSWORD)")
	fs.StringVar(&f.token, "registry-token", "", "Set token for auth ($IMGPKG_TOKEN)")
	fs.BoolVar(&f.anon, "registry-anon", false, "Set anonymous auth ($IMGPKG_ANON)")
	fs.DurationVar(&f.responseHeaderTimeout, "registry-response-header-timeout", 30*time.Second, "Maximum time to allow a request to wait for a server's response headers from the registry (ms|s|m|h)")
	fs.IntVar(&f.retryCount, "registry-retry-count", 5, "Set the number of times ferry retries to send requests to the registry in case of an error")
}

// options turns the flags, completed by their environment forms
// (IMGPKG_USERNAME, IMGPKG_PASSWORD, IMGPKG_TOKEN, IMGPKG_ANON), into
// registry options. A flag given on the command line wins over its variable.
func (f *registryFlags) options(getenv func(string) string) registry.Options {
	if getenv == nil {
		getenv = os.Getenv
	}
	pick := func(flag, env string) string {
		if flag != "" {
			return flag
		}
		return getenv(env)
	}
	anon := f.anon
	if !anon {
		switch getenv("IMGPKG_ANON") {
		case "true", "1", "yes":
			anon = true
		}
	}
	retries := f.retryCount
	if retries == 0 {
		retries = -1 // zero retries asked for explicitly
	}
	return registry.Options{
		CACertPaths:           f.caCertPaths,
		SkipVerify:            !f.verifyCerts,
		Insecure:              f.insecure,
		Username:              pick(f.username, "IMGPKG_USERNAME"),
		Password:              pick(f.password, "IMGPKG_PASSWORD"),
		Token:                 pick(f.token, "IMGPKG_TOKEN"),
		Anon:                  anon,
		ResponseHeaderTimeout: f.responseHeaderTimeout,
		RetryCount:            retries,
		UserAgent:             "ferry/" + versionString(),
		Getenv:                getenv,
		DebugLog:              debugLog(f.fs),
	}
}

// client builds a registry client from the flags.
func (f *registryFlags) client() (*registry.Client, error) {
	return registry.New(f.options(nil))
}
