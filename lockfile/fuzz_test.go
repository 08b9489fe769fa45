package lockfile

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func FuzzParseImagesLock(f *testing.F) {
	f.Add([]byte(header + "images:\n- image: reg.io/a@sha256:" + hexA + "\n  annotations:\n    kbld.carvel.dev/id: x\n"))
	f.Add([]byte("---\n---\n" + header + "images: [{image: &d \"r/a@sha256:" + hexB + "\", annotations: {k: *d, 1: true}}]\n"))
	f.Add([]byte(header + "images:\n- image: reg.io/a@sha256:" + hexA + "\n  annotations: {e: !!binary aGk=, n: 1.0, z: ''}\n"))
	// The malformed ImagesLock files of the corpus.
	bad, err := filepath.Glob(filepath.Join(badDir, "imageslock-*.yml"))
	if err != nil || len(bad) == 0 {
		f.Fatalf("corpus %s: %v (%d files)", badDir, err, len(bad))
	}
	for _, path := range bad {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lock, err := ParseImagesLock("fuzz.yml", data)
		if err != nil {
			if lock != nil {
				t.Fatalf("value %+v returned with error %v", lock, err)
			}
			return
		}
		out, err := lock.Marshal()
		if err != nil {
			t.Fatalf("a parsed lock does not marshal: %v\n%+v", err, lock)
		}
		again, err := ParseImagesLock("fuzz-out.yml", out)
		if err != nil {
			t.Fatalf("marshalled output does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, lock) {
			t.Fatalf("round trip changed the lock:\nfirst  %#v\nsecond %#v\n%s", lock, again, out)
		}
		out2, err := again.Marshal()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("marshal is not stable: %v\n%s\n%s", err, out, out2)
		}
	})
}
