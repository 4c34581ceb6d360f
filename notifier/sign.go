package notifier

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidSecret is wrapped by every error ParseSecret returns. Those errors
// never quote the secret, so they are safe to log.
var ErrInvalidSecret = errors.New("invalid secret")

// ErrBadSignature is wrapped by every error Verify returns.
var ErrBadSignature = errors.New("bad webhook signature")

// secretPrefix starts every Standard Webhooks secret, so a secret pasted
// into the wrong field is recognisable.
const secretPrefix = "whsec_"

// Key lengths ParseSecret accepts: the Standard Webhooks spec asks for 24 to
// 64 random bytes.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// redacted is what a Secret prints as wherever it is formatted or logged.
const redacted = secretPrefix + "…"

// Secret is a key that signs attempts the Standard Webhooks way, so a partner
// can check that a notice came from us and was not replayed. The key never
// leaves it by accident: String, GoString, Format (every fmt verb) and
// LogValue all print a redacted form, and only Encode returns the key, for
// storage. The zero Secret signs nothing.
type Secret struct {
	key []byte
}

// ParseSecret reads a secret in the Standard Webhooks form "whsec_" followed by
// the key in standard base64, padded or not. The key must be MinSecretBytes to
// MaxSecretBytes long. Errors wrap ErrInvalidSecret and never contain s.
func ParseSecret(s string) (Secret, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), secretPrefix)
	if !ok {
		return Secret{}, fmt.Errorf("%w: want %s followed by base64", ErrInvalidSecret, secretPrefix)
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(b64, "=") {
		enc = base64.RawStdEncoding // also reads padded-length input that needs no padding
	}
	key, err := enc.DecodeString(b64)
	if err != nil { // err quotes an offset of s only, but say nothing of s at all
		return Secret{}, fmt.Errorf("%w: the part after %s is not standard base64", ErrInvalidSecret, secretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return Secret{}, fmt.Errorf("%w: key is %d bytes, want %d to %d", ErrInvalidSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return Secret{key: key}, nil
}

// IsZero reports whether s holds no key.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// String returns "whsec_…" (empty for the zero Secret), never the key, so a
// Secret in a log line or error message gives nothing away.
func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// GoString keeps %#v as safe as %v.
func (s Secret) GoString() string { return "notifier.Secret{" + s.String() + "}" }

// Format prints the redacted form for every verb, including %d and %x, which
// would otherwise print the key bytes.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.String())
}

// LogValue makes slog print the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Encode returns the full secret, "whsec_<base64>", which ParseSecret reads
// back. It is for storage only: never log it.
func (s Secret) Encode() string {
	return secretPrefix + base64.StdEncoding.EncodeToString(s.key)
}

// mac returns the raw HMAC-SHA256 of the Standard Webhooks signed content,
// id "." unix-seconds "." body.
func (s Secret) mac(id string, ts time.Time, body []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns the Webhook-Signature header for one attempt: "v1,<base64>"
// per secret, in order, separated by spaces, so a partner rotating keys
// accepts the attempt with either the old or the new one. ts is the attempt's
// Webhook-Timestamp (whole seconds are signed). Zero Secrets are skipped;
// with none left Sign returns "".
func Sign(secrets []Secret, id string, ts time.Time, body []byte) string {
	var b strings.Builder
	for _, s := range secrets {
		if s.IsZero() {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(s.mac(id, ts, body)))
	}
	return b.String()
}

// Verify checks a Webhook-Signature header the way a partner should, for
// tests and for partners written in Go: ts must be within tolerance of now
// (either side), which stops replays, and some v1 signature in header must
// match some secret. Signatures of other versions are ignored. Comparison is
// in constant time. Errors wrap ErrBadSignature.
func Verify(header string, secrets []Secret, id string, ts time.Time, body []byte, now time.Time, tolerance time.Duration) error {
	if skew := now.Sub(ts).Abs(); skew > tolerance { // Abs saturates, so no overflow
		return fmt.Errorf("%w: timestamp %d is %s from now, tolerance %s",
			ErrBadSignature, ts.Unix(), skew.Round(time.Second), tolerance)
	}
	var macs [][]byte
	for _, s := range secrets {
		if !s.IsZero() {
			macs = append(macs, s.mac(id, ts, body))
		}
	}
	if len(macs) == 0 {
		return fmt.Errorf("%w: no secret to check with", ErrBadSignature)
	}
	seen := false
	for _, sig := range strings.Fields(header) {
		b64, ok := strings.CutPrefix(sig, "v1,")
		if !ok {
			continue
		}
		seen = true
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		for _, want := range macs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	if !seen {
		return fmt.Errorf("%w: no v1 signature in the header", ErrBadSignature)
	}
	return fmt.Errorf("%w: no signature matches", ErrBadSignature)
}
