package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// fanotify ABI details not spelled out by x/sys (from <linux/fanotify.h>).
const (
	fanotifyMetadataVersion = 3  // FANOTIFY_METADATA_VERSION
	eventMetadataLen        = 24 // sizeof(struct fanotify_event_metadata)
	infoHeaderLen           = 4  // sizeof(struct fanotify_event_info_header)
	fidInfoHandleOff        = 12 // offsetof(struct fanotify_event_info_fid, handle)
	fileHandleHeaderLen     = 8  // sizeof(struct file_handle) without f_handle
	maxHandleSize           = 128

	// keyLen bounds the length of an identity key: fsid, handle type, handle.
	maxKeyLen = 8 + 4 + maxHandleSize
)

// initFlags are the fanotify_init flags: notification class, FIDs of the
// directory (with the entry name) and of the target object on every event.
const initFlags = unix.FAN_CLASS_NOTIF | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK |
	unix.FAN_REPORT_FID | unix.FAN_REPORT_DFID_NAME | unix.FAN_REPORT_TARGET_FID

// fullMask is what the journal asks for; optionalBits may be dropped (in this
// order) when the kernel refuses the mask with EINVAL.
const fullMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_RENAME | unix.FAN_MODIFY |
	unix.FAN_CLOSE_WRITE | unix.FAN_ATTRIB | unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF |
	unix.FAN_ONDIR

var optionalBits = []struct {
	bit  uint64
	name string
}{
	{unix.FAN_MOVE_SELF, "FAN_MOVE_SELF"},
	{unix.FAN_DELETE_SELF, "FAN_DELETE_SELF"},
	{unix.FAN_CLOSE_WRITE, "FAN_CLOSE_WRITE"},
}

// unsupported wraps ErrUnsupported with a reason.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// sysctlMu serializes the temporary change of fs.fanotify.max_queued_events
// that QueueSize > 0 makes around fanotify_init within this process.
var sysctlMu sync.Mutex

const maxQueuedEventsPath = "/proc/sys/fs/fanotify/max_queued_events"

// fanotifyInit creates the group. queueSize < 0 asks for an unlimited queue;
// > 0 creates the group while the system-wide default queue length is set to
// queueSize (the kernel reads it once, at fanotify_init); 0 takes the
// default.
func fanotifyInit(queueSize int) (int, error) {
	flags := uint(initFlags)
	if queueSize < 0 {
		flags |= unix.FAN_UNLIMITED_QUEUE
	}
	doInit := func() (int, error) {
		for {
			fd, err := unix.FanotifyInit(flags, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
			if err == unix.EINTR {
				continue
			}
			return fd, err
		}
	}
	var fd int
	var err error
	if queueSize > 0 {
		sysctlMu.Lock()
		old, rerr := os.ReadFile(maxQueuedEventsPath)
		if rerr != nil {
			sysctlMu.Unlock()
			return -1, fmt.Errorf("queue size %d: %w", queueSize, rerr)
		}
		if werr := os.WriteFile(maxQueuedEventsPath, []byte(strconv.Itoa(queueSize)), 0); werr != nil {
			sysctlMu.Unlock()
			return -1, fmt.Errorf("queue size %d: %w", queueSize, werr)
		}
		fd, err = doInit()
		if werr := os.WriteFile(maxQueuedEventsPath, []byte(strings.TrimSpace(string(old))), 0); werr != nil && err == nil {
			err = fmt.Errorf("queue size %d: restore %s: %w", queueSize, maxQueuedEventsPath, werr)
			unix.Close(fd)
			fd = -1
		}
		sysctlMu.Unlock()
	} else {
		fd, err = doInit()
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.EPERM):
			return -1, unsupported("fanotify_init: %v (needs CAP_SYS_ADMIN)", err)
		case errors.Is(err, unix.EINVAL):
			return -1, unsupported("fanotify_init: %v (kernel without FAN_REPORT_TARGET_FID/FAN_RENAME: needs Linux 5.17 or later)", err)
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
			return -1, unsupported("fanotify_init: %v (kernel without fanotify)", err)
		}
		return -1, fmt.Errorf("fanotify_init: %w", err)
	}
	return fd, nil
}

// fanotifyMarkFS places the filesystem mark, dropping optional event bits the
// kernel refuses. It returns the mask in force and the names of dropped bits.
func fanotifyMarkFS(fd int, path string) (uint64, []string, error) {
	mask := uint64(fullMask)
	var dropped []string
	next := 0
	for {
		err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, mask, unix.AT_FDCWD, path)
		if err == nil {
			return mask, dropped, nil
		}
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL) && next < len(optionalBits):
			mask &^= optionalBits[next].bit
			dropped = append(dropped, optionalBits[next].name)
			next++
			continue
		case errors.Is(err, unix.EPERM):
			return 0, nil, unsupported("fanotify_mark %s: %v (a filesystem mark needs CAP_SYS_ADMIN)", path, err)
		case errors.Is(err, unix.ENODEV), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV):
			return 0, nil, unsupported("fanotify_mark %s: %v (the filesystem cannot report file handles)", path, err)
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
			return 0, nil, unsupported("fanotify_mark %s: %v", path, err)
		}
		return 0, nil, fmt.Errorf("fanotify_mark %s: %w", path, err)
	}
}

// event is one parsed fanotify event. Keys are identity keys (see appendKey)
// in the processor's scratch buffer; names point into the read buffer. All
// of it is valid only until the next event is parsed.
type event struct {
	mask  uint64
	dir   []byte // DFID / DFID_NAME / OLD_DFID_NAME: the directory
	name  []byte // entry name in dir ("." for an event on dir itself)
	dir2  []byte // NEW_DFID_NAME (FAN_RENAME)
	name2 []byte
	obj   []byte // FID: the object itself (TARGET_FID for dirent events)
}

// appendKey appends the identity key of a fanotify FID record's fsid and
// file handle: 8 bytes of fsid as fileid.FSIDOf lays them out (two 32-bit
// values, little endian), the handle type as 4 bytes little endian and the
// handle bytes — the binary form that fileid.Make hex-encodes.
func appendKey(b []byte, fsid []byte, typ int32, handle []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, binary.NativeEndian.Uint32(fsid[0:4]))
	b = binary.LittleEndian.AppendUint32(b, binary.NativeEndian.Uint32(fsid[4:8]))
	b = binary.LittleEndian.AppendUint32(b, uint32(typ))
	return append(b, handle...)
}

var errBadEvent = errors.New("malformed fanotify event")

// parseEvent parses the event at the start of buf. It returns the event's
// length; scratch (capacity >= 3*maxKeyLen, length 0) receives the keys.
func parseEvent(buf []byte, ev *event, scratch []byte) (int, error) {
	if len(buf) < eventMetadataLen {
		return 0, errBadEvent
	}
	evLen := int(binary.NativeEndian.Uint32(buf[0:4]))
	if buf[4] != fanotifyMetadataVersion {
		return 0, fmt.Errorf("fanotify metadata version %d, want %d", buf[4], fanotifyMetadataVersion)
	}
	metaLen := int(binary.NativeEndian.Uint16(buf[6:8]))
	if evLen < eventMetadataLen || evLen > len(buf) || metaLen < eventMetadataLen || metaLen > evLen {
		return 0, errBadEvent
	}
	*ev = event{mask: binary.NativeEndian.Uint64(buf[8:16])}
	if fd := int32(binary.NativeEndian.Uint32(buf[16:20])); fd >= 0 {
		unix.Close(int(fd)) // not expected in FID mode
	}
	info := buf[metaLen:evLen]
	for len(info) >= infoHeaderLen {
		typ := info[0]
		l := int(binary.NativeEndian.Uint16(info[2:4]))
		if l < infoHeaderLen || l > len(info) {
			return 0, errBadEvent
		}
		rec := info[:l]
		info = info[l:]
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_FID, unix.FAN_EVENT_INFO_TYPE_DFID, unix.FAN_EVENT_INFO_TYPE_DFID_NAME,
			unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
		default:
			continue // pidfd, error, range, mnt: not asked for
		}
		if len(rec) < fidInfoHandleOff+fileHandleHeaderLen {
			return 0, errBadEvent
		}
		fsid := rec[4:12]
		hb := int(binary.NativeEndian.Uint32(rec[12:16]))
		ht := int32(binary.NativeEndian.Uint32(rec[16:20]))
		hs := fidInfoHandleOff + fileHandleHeaderLen
		if hb <= 0 || hb > maxHandleSize || hs+hb > len(rec) {
			return 0, errBadEvent
		}
		start := len(scratch)
		scratch = appendKey(scratch, fsid, ht, rec[hs:hs+hb])
		key := scratch[start:len(scratch):len(scratch)]
		var name []byte
		if typ != unix.FAN_EVENT_INFO_TYPE_FID && typ != unix.FAN_EVENT_INFO_TYPE_DFID {
			name = rec[hs+hb:]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
		}
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_FID:
			ev.obj = key
		case unix.FAN_EVENT_INFO_TYPE_DFID, unix.FAN_EVENT_INFO_TYPE_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
			ev.dir, ev.name = key, name
		case unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
			ev.dir2, ev.name2 = key, name
		}
	}
	return evLen, nil
}
