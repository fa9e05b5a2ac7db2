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
	once   sync.Once
	mu     sync.Mutex
	log    hclog.Logger
	recent []moduleLine // the last warnings and errors, oldest first

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

type moduleLine struct {
	at  time.Time
	msg string
}

const recentMax = 16

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
		if level == hclog.Error || level == hclog.Warn {
			if len(modlog.recent) == recentMax {
				modlog.recent = append(modlog.recent[:0], modlog.recent[1:]...)
			}
			modlog.recent = append(modlog.recent, moduleLine{at: time.Now(), msg: msg})
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

// moduleLinesSince returns the warnings and errors the module logged since t (the first and the
// last two), joined.
// The module wrote them before it returned, but the reader may not have seen them yet: wait
// (briefly) until the pipe is empty and the reader is waiting for more.
func moduleLinesSince(t time.Time) string {
	if modlog.pipe == nil {
		return ""
	}
	for i := 0; i < 100; i++ {
		n, err := unix.IoctlGetInt(int(modlog.pipe.Fd()), unix.TIOCINQ)
		if err != nil || (n == 0 && modlog.reading.Load()) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	modlog.mu.Lock()
	defer modlog.mu.Unlock()
	// The first line since t usually names the cause (which server, what failed); the last
	// ones say what the module made of it.
	var lines []string
	for _, l := range modlog.recent {
		if !l.at.Before(t) {
			lines = append(lines, l.msg)
		}
	}
	if len(lines) > 3 {
		lines = append(lines[:1], lines[len(lines)-2:]...)
	}
	var out []string
	for _, l := range lines {
		dup := false
		for _, o := range out {
			dup = dup || o == l
		}
		if !dup {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}
