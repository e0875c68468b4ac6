//go:build !race

package location

import "testing"

// maxBytesPerBinding is the memory budget per registration; Kamailio's
// usrloc needs about 1.3 KB.
const maxBytesPerBinding = 1000

func TestMemoryPerBinding(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 20k bindings")
	}
	per := heapPerBinding(t, 20_000)
	t.Logf("%.0f B/binding", per)
	if per > maxBytesPerBinding {
		t.Errorf("%.0f B/binding, budget %d", per, maxBytesPerBinding)
	}
}
