package lockfile

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const (
	hexA = "1111111111111111111111111111111111111111111111111111111111111111"
	hexB = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	hexC = "c000000000000000000000000000000000000000000000000000000000000000"

	header = "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\n"
)

func TestParseImagesLock(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *ImagesLock
	}{
		{
			name: "imgpkg style with annotations",
			in: "---\n" + header + "images:\n" +
				"- image: index.docker.io/library/nginx@sha256:" + hexA + "\n" +
				"  annotations:\n    kbld.carvel.dev/id: nginx:1.25\n    z/other: \"true\"\n" +
				"- image: 127.0.0.1:5001/tiny/app@sha256:" + hexB + "\n",
			want: &ImagesLock{Images: []ImageRef{
				{Image: "index.docker.io/library/nginx@sha256:" + hexA, Annotations: map[string]string{"kbld.carvel.dev/id": "nginx:1.25", "z/other": "true"}},
				{Image: "127.0.0.1:5001/tiny/app@sha256:" + hexB},
			}},
		},
		{
			name: "order kept, not sorted",
			in: header + "images:\n" +
				"- image: z.io/z@sha256:" + hexC + "\n" +
				"- image: a.io/a@sha256:" + hexA + "\n" +
				"- image: m.io/m@sha256:" + hexB + "\n",
			want: &ImagesLock{Images: []ImageRef{
				{Image: "z.io/z@sha256:" + hexC},
				{Image: "a.io/a@sha256:" + hexA},
				{Image: "m.io/m@sha256:" + hexB},
			}},
		},
		{name: "empty images list", in: header + "images: []\n", want: &ImagesLock{}},
		{name: "null images", in: header + "images:\n", want: &ImagesLock{}},
		{name: "no images key", in: header, want: &ImagesLock{}},
		{
			name: "tag before digest accepted",
			in:   header + "images:\n- image: reg.io/app:v1@sha256:" + hexA + "\n",
			want: &ImagesLock{Images: []ImageRef{{Image: "reg.io/app:v1@sha256:" + hexA}}},
		},
		{
			name: "empty annotations become nil",
			in:   header + "images:\n- image: reg.io/app@sha256:" + hexA + "\n  annotations: {}\n",
			want: &ImagesLock{Images: []ImageRef{{Image: "reg.io/app@sha256:" + hexA}}},
		},
		{
			name: "leading empty documents skipped",
			in:   "---\n---\n" + header + "images:\n- image: reg.io/app@sha256:" + hexA + "\n",
			want: &ImagesLock{Images: []ImageRef{{Image: "reg.io/app@sha256:" + hexA}}},
		},
		{
			name: "trailing empty document allowed",
			in:   header + "images: []\n---\n# nothing here\n",
			want: &ImagesLock{},
		},
		{
			name: "flow style and aliases",
			in:   header + "images: [{image: &d \"reg.io/app@sha256:" + hexA + "\", annotations: {k: *d}}]\n",
			want: &ImagesLock{Images: []ImageRef{{Image: "reg.io/app@sha256:" + hexA, Annotations: map[string]string{"k": "reg.io/app@sha256:" + hexA}}}},
		},
		{
			name: "non-string annotation scalars keep their text",
			in:   header + "images:\n- image: reg.io/app@sha256:" + hexA + "\n  annotations:\n    n: 1.0\n    b: true\n    e:\n",
			want: &ImagesLock{Images: []ImageRef{{Image: "reg.io/app@sha256:" + hexA, Annotations: map[string]string{"n": "1.0", "b": "true", "e": ""}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseImagesLock("images.yml", []byte(tt.in))
			if err != nil {
				t.Fatalf("ParseImagesLock: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v\nwant %#v", got, tt.want)
			}
			// Round trip: marshal and parse again gives the same value.
			out, err := got.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			again, err := ParseImagesLock("out.yml", out)
			if err != nil {
				t.Fatalf("parse marshalled output: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(again, tt.want) {
				t.Fatalf("round trip: got %#v\nwant %#v\n%s", again, tt.want, out)
			}
		})
	}
}

func TestImagesLockMarshalGolden(t *testing.T) {
	lock := &ImagesLock{Images: []ImageRef{
		{Image: "reg.io/app@sha256:" + hexA, Annotations: map[string]string{"kbld.carvel.dev/id": "docker.io/app", "a.io/first": "x: y"}},
		{Image: "reg.io/db@sha256:" + hexB, Annotations: map[string]string{}},
	}}
	want := "---\n" +
		"apiVersion: imgpkg.carvel.dev/v1alpha1\n" +
		"kind: ImagesLock\n" +
		"images:\n" +
		"- image: reg.io/app@sha256:" + hexA + "\n" +
		"  annotations:\n" +
		"    a.io/first: 'x: y'\n" +
		"    kbld.carvel.dev/id: docker.io/app\n" +
		"- image: reg.io/db@sha256:" + hexB + "\n"
	got, err := lock.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}

	empty, err := (&ImagesLock{}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages: []\n"; string(empty) != want {
		t.Fatalf("empty lock: got:\n%s\nwant:\n%s", empty, want)
	}
}

func TestBundleLock(t *testing.T) {
	tests := []struct {
		name       string
		lock       BundleLock
		wantOutput string
	}{
		{
			name: "with tag",
			lock: BundleLock{Bundle: BundleRef{Image: "reg.io/bundle@sha256:" + hexA, Tag: "v1.2.3"}},
			wantOutput: "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: BundleLock\nbundle:\n" +
				"  image: reg.io/bundle@sha256:" + hexA + "\n  tag: v1.2.3\n",
		},
		{
			name: "without tag",
			lock: BundleLock{Bundle: BundleRef{Image: "reg.io/bundle@sha256:" + hexA}},
			wantOutput: "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: BundleLock\nbundle:\n" +
				"  image: reg.io/bundle@sha256:" + hexA + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.lock.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.wantOutput {
				t.Fatalf("got:\n%s\nwant:\n%s", out, tt.wantOutput)
			}
			got, err := ParseBundleLock("bundle.yml", out)
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.lock {
				t.Fatalf("round trip: got %+v, want %+v", *got, tt.lock)
			}
		})
	}
}

func TestImageLocations(t *testing.T) {
	in := "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImageLocations\nimages:\n" +
		"- image: z.io/app@sha256:" + hexA + "\n  isBundle: false\n" +
		"- image: a.io/bundle@sha256:" + hexB + "\n  isBundle: true\n" +
		"- image: m.io/img@sha256:" + hexC + "\n"
	got, err := ParseImageLocations("image-locations.yml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &ImageLocations{Images: []ImageLocation{
		{Image: "z.io/app@sha256:" + hexA},
		{Image: "a.io/bundle@sha256:" + hexB, IsBundle: true},
		{Image: "m.io/img@sha256:" + hexC},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parse: got %+v, want %+v", got, want)
	}
	out, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	wantOut := "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImageLocations\nimages:\n" +
		"- image: a.io/bundle@sha256:" + hexB + "\n  isBundle: true\n" +
		"- image: m.io/img@sha256:" + hexC + "\n  isBundle: false\n" +
		"- image: z.io/app@sha256:" + hexA + "\n  isBundle: false\n"
	if string(out) != wantOut {
		t.Fatalf("marshal: got:\n%s\nwant:\n%s", out, wantOut)
	}
	if got.Images[0].Image != "z.io/app@sha256:"+hexA {
		t.Fatalf("Marshal reordered its receiver: %+v", got.Images)
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      string
		wantField string // when an error is expected
	}{
		{name: "images lock", in: header + "images: []\n", want: KindImagesLock},
		{name: "bundle lock, body not read", in: "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: BundleLock\nbundle: {whatever: 1}\n", want: KindBundleLock},
		{name: "image locations", in: "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImageLocations\n", want: KindImageLocations},
		{name: "unknown kind", in: "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: Bundle\n", wantField: "kind"},
		{name: "missing kind", in: "apiVersion: imgpkg.carvel.dev/v1alpha1\n", wantField: "kind"},
		{name: "wrong apiVersion", in: "apiVersion: imgpkg.carvel.dev/v1\nkind: ImagesLock\n", wantField: "apiVersion"},
		{name: "not YAML", in: "{", wantField: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Kind("lock.yml", []byte(tt.in))
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("Kind = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Kind = %q, %v; want a *FieldError matching ErrInvalid", got, err)
			}
			if fe.File != "lock.yml" || fe.Field != tt.wantField {
				t.Fatalf("FieldError{File: %q, Field: %q}, want {lock.yml, %q}", fe.File, fe.Field, tt.wantField)
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	reason := errors.New("boom")
	tests := []struct {
		err  *FieldError
		want string
	}{
		{&FieldError{File: "images.yml", Field: "images[2].image", Err: reason}, `images.yml: field "images[2].image": boom`},
		{&FieldError{File: "images.yml", Err: reason}, `images.yml: boom`},
		{&FieldError{Field: "bundle.tag", Err: reason}, `field "bundle.tag": boom`},
		{&FieldError{File: "x.yml"}, `x.yml: invalid lock file`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, ErrInvalid) {
			t.Errorf("errors.Is(%q, ErrInvalid) = false", tt.want)
		}
		if tt.err.Err != nil && !errors.Is(tt.err, reason) {
			t.Errorf("%q does not unwrap to its reason", tt.want)
		}
	}
}

func TestMarshalValidates(t *testing.T) {
	tests := []struct {
		name      string
		marshal   func() ([]byte, error)
		wantField string
	}{
		{"images lock tag ref", (&ImagesLock{Images: []ImageRef{{Image: "reg.io/a@sha256:" + hexA}, {Image: "reg.io/a:1"}}}).Marshal, "images[1].image"},
		{"bundle lock empty", (&BundleLock{}).Marshal, "bundle.image"},
		{"bundle lock bad tag", (&BundleLock{Bundle: BundleRef{Image: "reg.io/a@sha256:" + hexA, Tag: "a b"}}).Marshal, "bundle.tag"},
		{"image locations bad hex", (&ImageLocations{Images: []ImageLocation{{Image: "reg.io/a@sha256:abc"}}}).Marshal, "images[0].image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.marshal()
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Marshal = %q, %v; want a *FieldError matching ErrInvalid", out, err)
			}
			if fe.Field != tt.wantField || fe.File != "" {
				t.Fatalf("FieldError{File: %q, Field: %q}, want {\"\", %q}", fe.File, fe.Field, tt.wantField)
			}
			if out != nil {
				t.Fatalf("output with error: %q", out)
			}
		})
	}
}

func TestRelocate(t *testing.T) {
	orig := &ImagesLock{Images: []ImageRef{
		{Image: "index.docker.io/library/nginx:1.25@sha256:" + hexA, Annotations: map[string]string{"kbld.carvel.dev/id": "nginx"}},
		{Image: "gcr.io/x/y@sha256:" + hexB},
	}}
	got, err := orig.Relocate("127.0.0.1:5000/team/bundle")
	if err != nil {
		t.Fatal(err)
	}
	want := &ImagesLock{Images: []ImageRef{
		{Image: "127.0.0.1:5000/team/bundle@sha256:" + hexA, Annotations: map[string]string{"kbld.carvel.dev/id": "nginx"}},
		{Image: "127.0.0.1:5000/team/bundle@sha256:" + hexB},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	got.Images[0].Annotations["kbld.carvel.dev/id"] = "changed"
	if orig.Images[0].Annotations["kbld.carvel.dev/id"] != "nginx" || orig.Images[1].Image != "gcr.io/x/y@sha256:"+hexB {
		t.Fatalf("Relocate modified its receiver: %+v", orig)
	}
	for _, bad := range []string{"", "reg.io/Team", "reg.io/app:v1", "reg.io/app@sha256:" + hexA} {
		if _, err := orig.Relocate(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Relocate(%q) error = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestAliasExpansionBounded(t *testing.T) {
	// One image with many annotations, then that image repeated by alias many
	// times: expanding it would cost keys × aliases.
	var b strings.Builder
	b.WriteString(header + "images:\n- &a\n  image: reg.io/a@sha256:" + hexA + "\n  annotations:\n")
	for i := range 20000 {
		fmt.Fprintf(&b, "    k%d: v\n", i)
	}
	for range 20000 {
		b.WriteString("- *a\n")
	}
	_, err := ParseImagesLock("bomb.yml", []byte(b.String()))
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "aliases excessively") {
		t.Fatalf("got %v, want an excessive aliasing error", err)
	}

	// A few aliases in an ordinary file are fine.
	in := header + "images:\n- &a\n  image: reg.io/a@sha256:" + hexA + "\n  annotations: {k: v}\n- *a\n- *a\n"
	lock, err := ParseImagesLock("ok.yml", []byte(in))
	if err != nil || len(lock.Images) != 3 || lock.Images[2].Annotations["k"] != "v" {
		t.Fatalf("got %+v, %v", lock, err)
	}
}
