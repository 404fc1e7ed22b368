package continuous

import "golang.org/x/sys/unix"

func syscallErrno(e uint32) string {
	switch unix.Errno(e) {
	case unix.ENOSPC:
		return "ENOSPC"
	case unix.EDQUOT:
		return "EDQUOT"
	case unix.EROFS:
		return "EROFS"
	case unix.EIO:
		return "EIO"
	}
	return ""
}
