package secondary

import (
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/xattr"
	"golang.org/x/sys/unix"
)

func init() {
	extraHandlers[protocol.TCheck] = func(a *Agent, _ uint64, m protocol.Message) protocol.Message {
		req, ok := m.(*protocol.Check)
		if !ok {
			return &protocol.Error{Msg: fmt.Sprintf("protocol: unexpected message %T", m)}
		}
		return a.check(req)
	}
}

// check compares the secondary's copies (by ID, through the index) with
// the primary's digests: content (SHA-256 prefix) and synced xattrs. A
// copy it cannot read differs.
func (a *Agent) check(m *protocol.Check) protocol.Message {
	content := make([]bool, len(m.Items))
	xattrs := make([]bool, len(m.Items))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(len(m.Items), runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				content[i], xattrs[i] = a.checkOne(&m.Items[i])
			}
		}()
	}
	for i := range m.Items {
		next <- i
	}
	close(next)
	wg.Wait()
	out := &protocol.CheckOK{}
	for i := range m.Items {
		if content[i] {
			out.Content = append(out.Content, uint64(i))
		}
		if xattrs[i] {
			out.Xattrs = append(out.Xattrs, uint64(i))
		}
	}
	return out
}

func (a *Agent) checkOne(it *protocol.CheckItem) (contentDiffers, xattrsDiffer bool) {
	if !it.ID.Valid() {
		return true, true
	}
	// A regular file, opened without following a symlink (openContent):
	// never a device or FIFO read as content.
	f, _, err := a.openIndexContent(it.ID, unix.O_RDONLY)
	if err != nil {
		return true, true
	}
	defer f.Close()
	var xs []protocol.Xattr
	for _, x := range xattr.Read(procPath(int(f.Fd())), a.managedXattr) {
		xs = append(xs, protocol.Xattr{Name: x.Name, Value: x.Value})
	}
	xattrsDiffer = protocol.XattrDigest(xs) != it.Xattrs
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return true, xattrsDiffer
	}
	var sum [16]byte
	copy(sum[:], h.Sum(nil))
	return sum != it.Content, xattrsDiffer
}
