package notifier_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
)

// The Standard Webhooks test vector (spec/standard-webhooks.md).
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorUnix   = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var vectorTime = time.Unix(vectorUnix, 0)

// mustSecret parses a secret the test knows is valid.
func mustSecret(t *testing.T, s string) notifier.Secret {
	t.Helper()
	sec, err := notifier.ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret: %v", err)
	}
	return sec
}

// secretOf returns a whsec_ secret whose key is n bytes of b.
func secretOf(b byte, n int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, n))
}

func TestSignVector(t *testing.T) {
	sec := mustSecret(t, vectorSecret)
	got := notifier.Sign([]notifier.Secret{sec}, vectorID, vectorTime, []byte(vectorBody))
	if got != vectorSig {
		t.Fatalf("Sign(vector) = %q, want %q", got, vectorSig)
	}
	// Only whole seconds are signed.
	if got := notifier.Sign([]notifier.Secret{sec}, vectorID, vectorTime.Add(999*time.Millisecond), []byte(vectorBody)); got != vectorSig {
		t.Fatalf("Sign(vector + 999ms) = %q, want %q", got, vectorSig)
	}
}

func TestSignRotation(t *testing.T) {
	old, cur := mustSecret(t, vectorSecret), mustSecret(t, secretOf('k', 32))
	body := []byte(vectorBody)
	header := notifier.Sign([]notifier.Secret{old, cur}, vectorID, vectorTime, body)
	sigs := strings.Split(header, " ")
	if len(sigs) != 2 || sigs[0] != vectorSig || !strings.HasPrefix(sigs[1], "v1,") || sigs[1] == sigs[0] {
		t.Fatalf("Sign(old, new) = %q, want the vector's signature then another v1", header)
	}
	for _, tt := range []struct {
		name    string
		secrets []notifier.Secret
	}{
		{"OldKeyOnly", []notifier.Secret{old}},
		{"NewKeyOnly", []notifier.Secret{cur}},
		{"Both", []notifier.Secret{cur, old}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := notifier.Verify(header, tt.secrets, vectorID, vectorTime, body, vectorTime, 5*time.Minute); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestSignNoSecrets(t *testing.T) {
	for _, secrets := range [][]notifier.Secret{nil, {}, {{}}} {
		if got := notifier.Sign(secrets, "id", vectorTime, nil); got != "" {
			t.Errorf("Sign(%d zero or no secrets) = %q, want \"\"", len(secrets), got)
		}
	}
	sec := mustSecret(t, vectorSecret)
	if got := notifier.Sign([]notifier.Secret{{}, sec}, vectorID, vectorTime, []byte(vectorBody)); got != vectorSig {
		t.Errorf("Sign(zero, vector) = %q, want the zero Secret skipped: %q", got, vectorSig)
	}
}

func TestVerify(t *testing.T) {
	sec := mustSecret(t, vectorSecret)
	other := mustSecret(t, secretOf('o', 24))
	body := []byte(vectorBody)
	tol := 5 * time.Minute
	tests := []struct {
		name    string
		header  string
		secrets []notifier.Secret
		id      string
		ts      time.Time
		body    []byte
		now     time.Time
		wantErr string // "" means valid
	}{
		{"Vector", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime, ""},
		{"WithinTolerancePast", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime.Add(tol), ""},
		{"WithinToleranceFuture", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime.Add(-tol), ""},
		{"AmongOtherVersions", "v1a,abc " + vectorSig + " v2,xyz", []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime, ""},
		{"AfterBadV1", "v1,AAAA v1,%%% " + vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime, ""},
		{"SecondSecretMatches", vectorSig, []notifier.Secret{other, sec}, vectorID, vectorTime, body, vectorTime, ""},
		{"TamperedBody", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, []byte(`{"test": 2432232315}`), vectorTime, "no signature matches"},
		{"EmptyBody", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, nil, vectorTime, "no signature matches"},
		{"OtherID", vectorSig, []notifier.Secret{sec}, "msg_other", vectorTime, body, vectorTime, "no signature matches"},
		{"OtherTimestamp", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime.Add(time.Second), body, vectorTime, "no signature matches"},
		{"WrongSecret", vectorSig, []notifier.Secret{other}, vectorID, vectorTime, body, vectorTime, "no signature matches"},
		{"Stale", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime.Add(tol + time.Second), "tolerance"},
		{"FromTheFuture", vectorSig, []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime.Add(-tol - time.Second), "tolerance"},
		{"FarFuture", vectorSig, []notifier.Secret{sec}, vectorID, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), body, vectorTime, "tolerance"},
		{"FarPast", vectorSig, []notifier.Secret{sec}, vectorID, time.Time{}, body, vectorTime, "tolerance"},
		{"EmptyHeader", "", []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime, "no v1 signature"},
		{"OnlyOtherVersions", "v2," + strings.TrimPrefix(vectorSig, "v1,"), []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime, "no v1 signature"},
		{"NotBase64", "v1,not*base64", []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime, "no signature matches"},
		{"Truncated", vectorSig[:len(vectorSig)-4], []notifier.Secret{sec}, vectorID, vectorTime, body, vectorTime, "no signature matches"},
		{"NoSecrets", vectorSig, nil, vectorID, vectorTime, body, vectorTime, "no secret"},
		{"ZeroSecret", vectorSig, []notifier.Secret{{}}, vectorID, vectorTime, body, vectorTime, "no secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notifier.Verify(tt.header, tt.secrets, tt.id, tt.ts, tt.body, tt.now, tol)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, notifier.ErrBadSignature) {
				t.Fatalf("Verify = %v, want an error wrapping ErrBadSignature", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Verify error %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	raw := strings.TrimRight(secretOf('r', 25), "=") // 25 bytes: base64 needs padding
	tests := []struct {
		name    string
		in      string
		wantErr string // "" means valid
	}{
		{"Vector", vectorSecret, ""},
		{"Padded", secretOf('p', 25), ""},
		{"RawUnpadded", raw, ""},
		{"Shortest", secretOf('s', 24), ""},
		{"Longest", secretOf('l', 64), ""},
		{"Spaces", " " + vectorSecret + "\n", ""},
		{"Empty", "", "want whsec_"},
		{"NoPrefix", strings.TrimPrefix(vectorSecret, "whsec_"), "want whsec_"},
		{"OtherPrefix", "whsek_" + strings.TrimPrefix(vectorSecret, "whsec_"), "want whsec_"},
		{"OnlyPrefix", "whsec_", "key is 0 bytes"},
		{"TooShort", secretOf('t', 23), "key is 23 bytes"},
		{"TooLong", secretOf('t', 65), "key is 65 bytes"},
		{"NotBase64", "whsec_MfKQ9r8GKYqrTwjUPD8I*PZIo2LaLaSw", "not standard base64"},
		{"URLSafe", "whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw", "not standard base64"},
		{"BadPadding", vectorSecret + "=", "not standard base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sec, err := notifier.ParseSecret(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseSecret: %v", err)
				}
				again, err := notifier.ParseSecret(sec.Encode())
				if err != nil || again.Encode() != sec.Encode() {
					t.Fatalf("ParseSecret(Encode()) = %v, %v; want the same key", again, err)
				}
				return
			}
			if !errors.Is(err, notifier.ErrInvalidSecret) {
				t.Fatalf("ParseSecret = %v, %v; want an error wrapping ErrInvalidSecret", sec, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseSecret error %q, want it to mention %q", err, tt.wantErr)
			}
			if in := strings.TrimSpace(tt.in); len(in) >= 10 && strings.Contains(err.Error(), in[6:10]) {
				t.Fatalf("ParseSecret error %q quotes the secret", err)
			}
		})
	}
	if got := mustSecret(t, vectorSecret).Encode(); got != vectorSecret {
		t.Errorf("Encode() = %q, want %q", got, vectorSecret)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	sec := mustSecret(t, vectorSecret)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(vectorSecret, "whsec_"))
	leaks := func(s string) bool {
		return strings.Contains(s, "MfKQ9r8G") || strings.Contains(s, string(key)) ||
			strings.Contains(s, fmt.Sprintf("%x", key[:4])) || strings.Contains(s, fmt.Sprint(key[:4])[1:8])
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("partner", "secret", sec, "secrets", []notifier.Secret{sec})
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("partner", "secret", sec, slog.Any("any", sec))
	for _, out := range []string{
		fmt.Sprint(sec), fmt.Sprintf("%v %+v %#v %s %q %x %X %d", sec, sec, sec, sec, sec, sec, sec, sec),
		fmt.Sprint([]notifier.Secret{sec}), fmt.Sprintf("%#v", []notifier.Secret{sec}),
		fmt.Sprintf("%+v", struct{ S notifier.Secret }{sec}), sec.String(), sec.GoString(),
		sec.LogValue().String(), logs.String(),
	} {
		if leaks(out) {
			t.Errorf("output leaks the key: %s", out)
		}
		if !strings.Contains(out, "whsec_…") {
			t.Errorf("output %q lacks the redacted form", out)
		}
	}
	if got := (notifier.Secret{}).String(); got != "" {
		t.Errorf("zero Secret String() = %q, want \"\"", got)
	}
}

func ExampleSign() {
	secret, err := notifier.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		fmt.Println(err)
		return
	}
	id, ts, body := "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`)
	header := notifier.Sign([]notifier.Secret{secret}, id, ts, body)
	fmt.Println(header)
	fmt.Println(secret) // safe to log

	// The partner's side: the same secret, and a clock within five minutes.
	now := ts.Add(time.Minute)
	fmt.Println(notifier.Verify(header, []notifier.Secret{secret}, id, ts, body, now, 5*time.Minute))
	fmt.Println(notifier.Verify(header, []notifier.Secret{secret}, id, ts, []byte(`{"test": 0}`), now, 5*time.Minute))
	// Output:
	// v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
	// whsec_…
	// <nil>
	// bad webhook signature: no signature matches
}
