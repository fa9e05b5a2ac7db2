package keymanager

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// The module's own error and warning lines, in SPIRE's log and in Configure's errors.
// vault-transit-pkcs11 logs nothing unless VAULT_TRANSIT_PKCS11_DEBUG names a level and a
// file; when the operator has not set it, the plugin sets it (errors and warnings) to the
// write end of a pipe it reads, before the module is loaded, and forwards each line to SPIRE's
// logger. Other modules do not read the variable. An operator's own setting is left alone.

const moduleLogEnv = "VAULT_TRANSIT_PKCS11_DEBUG"

var modlog struct {
	once    sync.Once
	mu      sync.Mutex
	log     hclog.Logger
	lastErr string
	errAt   time.Time

	pipe    *os.File    // read end, nil when not capturing
	reading atomic.Bool // the reader is blocked in read(2): everything before is handled
}

func moduleLogTo(log hclog.Logger) {
	modlog.mu.Lock()
	modlog.log = log
	modlog.mu.Unlock()
}

func captureModuleLog(log hclog.Logger) {
	modlog.once.Do(func() {
		if _, set := os.LookupEnv(moduleLogEnv); set {
			return
		}
		r, w, err := os.Pipe()
		if err != nil {
			log.Warn("Cannot capture the PKCS#11 module's log", "reason", err)
			return
		}
		// The module opens this path itself; the pipe's write end stays open for the
		// process's life (w is never closed), so the path stays valid.
		if err := os.Setenv(moduleLogEnv, fmt.Sprintf("level:2,file:/proc/self/fd/%d", w.Fd())); err != nil {
			r.Close()
			w.Close()
			return
		}
		keepOpen = w
		modlog.pipe = r
		go readModuleLog(r)
	})
}

var keepOpen *os.File

type flagReader struct{ f *os.File }

func (r flagReader) Read(b []byte) (int, error) {
	modlog.reading.Store(true)
	n, err := r.f.Read(b)
	modlog.reading.Store(false)
	return n, err
}

func readModuleLog(r *os.File) {
	sc := bufio.NewScanner(flagReader{r})
	sc.Buffer(make([]byte, 8192), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		msg, level := splitModuleLine(line)
		modlog.mu.Lock()
		log := modlog.log
		if level == hclog.Error {
			modlog.lastErr = msg
			modlog.errAt = time.Now()
		}
		modlog.mu.Unlock()
		if log != nil {
			log.Log(level, "PKCS#11 module: "+msg)
		}
	}
}

// splitModuleLine takes "<time> vault-transit-pkcs11[pid] tid N LEVEL func: message" apart.
func splitModuleLine(line string) (string, hclog.Level) {
	level := hclog.Info
	fields := strings.SplitN(line, " ", 6)
	if len(fields) == 6 {
		switch fields[4] {
		case "ERROR":
			level = hclog.Error
		case "WARN", "WARNING":
			level = hclog.Warn
		case "DEBUG":
			level = hclog.Debug
		}
		return fields[5], level
	}
	return line, level
}

// lastModuleError returns the module's error line of the last few seconds, if any, and forgets
// it. The module wrote it before it returned, but the reader may not have seen it yet: wait
// (briefly) until the pipe is empty and the reader is waiting for more.
func lastModuleError() string {
	if modlog.pipe != nil {
		for i := 0; i < 100; i++ {
			n, err := unix.IoctlGetInt(int(modlog.pipe.Fd()), unix.TIOCINQ)
			if err != nil || (n == 0 && modlog.reading.Load()) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	modlog.mu.Lock()
	defer modlog.mu.Unlock()
	s := modlog.lastErr
	if time.Since(modlog.errAt) > 5*time.Second {
		s = ""
	}
	modlog.lastErr = ""
	return s
}
