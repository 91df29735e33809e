package sim

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Sign computes an X-Ovh-Signature value: "$1$" followed by the lowercase
// hex SHA-1 of secret+"+"+consumer+"+"+method+"+"+fullURL+"+"+body+"+"+ts.
// fullURL is the URL exactly as requested, query string included.
func Sign(secret, consumer, method, fullURL string, body []byte, ts int64) string {
	h := sha1.New()
	h.Write([]byte(secret + "+" + consumer + "+" + method + "+" + fullURL + "+"))
	h.Write(body)
	h.Write([]byte("+" + strconv.FormatInt(ts, 10)))
	return "$1$" + hex.EncodeToString(h.Sum(nil))
}

// fullURL rebuilds the URL the client signed: scheme, Host header and the
// raw request URI (escapes such as %2F kept).
func fullURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.RequestURI
}

// authenticate checks a signed request; nil means it is accepted. Checks
// run in this order: application key present (401), known (403
// INVALID_KEY); consumer/timestamp/signature present (401); consumer key
// valid for this application (403 INVALID_CREDENTIAL); timestamp within
// the window (400 INVALID_SIGNATURE); signature (400 INVALID_SIGNATURE);
// access rules (403 NOT_GRANTED_CALL).
func (s *Sim) authenticate(r *http.Request, rel string, body []byte) *reply {
	ak := r.Header.Get("X-Ovh-Application")
	if ak == "" {
		return classErr(http.StatusUnauthorized, "Client::Unauthorized", "You must login first")
	}
	s.mu.Lock()
	secret, ok := s.secrets[ak]
	cred := s.creds[r.Header.Get("X-Ovh-Consumer")]
	now := s.now().Add(s.skew)
	s.mu.Unlock()
	if !ok {
		return codeErr(http.StatusForbidden, "INVALID_KEY", "Invalid application key")
	}
	ck := r.Header.Get("X-Ovh-Consumer")
	tsText := r.Header.Get("X-Ovh-Timestamp")
	sig := r.Header.Get("X-Ovh-Signature")
	if ck == "" || tsText == "" || sig == "" {
		return classErr(http.StatusUnauthorized, "Client::Unauthorized", "You must login first")
	}
	if cred == nil || cred.app != ak || s.isRevoked(cred) {
		return codeErr(http.StatusForbidden, "INVALID_CREDENTIAL", "This credential is not valid")
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return invalidSignature()
	}
	if d := now.Sub(time.Unix(ts, 0)); d > s.window || d < -s.window {
		return invalidSignature()
	}
	want := Sign(secret, ck, r.Method, fullURL(r), body, ts)
	if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) != 1 {
		return invalidSignature()
	}
	if len(cred.rules) > 0 && !granted(cred.rules, r.Method, rel) {
		return codeErr(http.StatusForbidden, "NOT_GRANTED_CALL", "This call has not been granted")
	}
	return nil
}

func (s *Sim) isRevoked(c *credential) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.revoked
}

func invalidSignature() *reply {
	return codeErr(http.StatusBadRequest, "INVALID_SIGNATURE", "Invalid signature")
}

// granted reports whether a rule allows method on path (relative to the
// API base, still escaped, without query).
func granted(rules []Rule, method, path string) bool {
	for _, rule := range rules {
		if !strings.EqualFold(rule.Method, method) {
			continue
		}
		if globMatch(rule.Path, path) {
			return true
		}
	}
	return false
}

func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re, err := regexp.Compile("^" + strings.Join(parts, ".*") + "$")
	return err == nil && re.MatchString(s)
}
