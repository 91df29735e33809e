package ovh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/ovh/go-ovh/ovh"
	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/provider"
)

// Config says how to reach the OVH API.
type Config struct {
	// Endpoint is an endpoint name ("ovh-eu", "ovh-ca", ...) or a base URL
	// without trailing slash ("http://127.0.0.1:8080/1.0"). Empty: go-ovh
	// conventions (OVH_ENDPOINT, ovh.conf files, default ovh-eu).
	Endpoint string
	// AppKey, AppSecret and ConsumerKey sign requests. Empty: taken the
	// go-ovh way from OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET,
	// OVH_CONSUMER_KEY or the ovh.conf files (/etc/ovh.conf, ~/.ovh.conf,
	// ./ovh.conf), which may also hold OAuth2 client credentials.
	AppKey, AppSecret, ConsumerKey string
	// Timeout caps one API call including its retries (default 60 s).
	Timeout time.Duration
	// Retry tunes the retries of idempotent calls.
	Retry RetryConfig
	// Log receives debug lines per request and warnings on retries and
	// adopted tasks. Secrets are never written to it.
	Log zerolog.Logger
	// Poll tunes how a lost reply is investigated.
	Poll PollConfig
}

// RetryConfig tunes HTTP retries of GET, PUT and DELETE.
type RetryConfig struct {
	// Max is the number of retries after the first attempt (default 4;
	// negative: none).
	Max int
	// WaitMin and WaitMax bound the exponential backoff between attempts
	// (defaults 500 ms and 8 s). A 429 or 503 Retry-After header wins.
	WaitMin, WaitMax time.Duration
}

// PollConfig tunes how the client learns the outcome of a POST whose reply
// was lost or named no task: it lists tasks up to Tries times, Interval
// apart, because a new task may show in the list with a lag, which on OVH
// can last well beyond a few seconds. The defaults observe for about 30 s.
type PollConfig struct {
	Tries    int           // default 15
	Interval time.Duration // default 2 s
}

// Default lost-reply observation: DefaultPollTries looks,
// DefaultPollInterval apart.
const (
	DefaultPollTries    = 15
	DefaultPollInterval = 2 * time.Second
)

// Client is a [provider.Provider] on the OVH API. It is safe for concurrent
// use.
type Client struct {
	log     zerolog.Logger
	poll    PollConfig
	timeout time.Duration
	httpc   *http.Client // sends every request; shares api.Client's transport

	mu  sync.Mutex  // guards api: go-ovh writes api.Client.Timeout on every request
	api *ovh.Client // signs requests and decodes replies
}

var _ provider.Provider = (*Client)(nil)

// New returns a client for cfg. It does not contact the API.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	switch {
	case cfg.Retry.Max == 0:
		cfg.Retry.Max = 4
	case cfg.Retry.Max < 0:
		cfg.Retry.Max = 0
	}
	if cfg.Retry.WaitMin <= 0 {
		cfg.Retry.WaitMin = 500 * time.Millisecond
	}
	if cfg.Retry.WaitMax <= 0 {
		cfg.Retry.WaitMax = 8 * time.Second
	}
	if cfg.Poll.Tries <= 0 {
		cfg.Poll.Tries = DefaultPollTries
	}
	if cfg.Poll.Interval <= 0 {
		cfg.Poll.Interval = DefaultPollInterval
	}

	api, err := ovh.NewClient(cfg.Endpoint, cfg.AppKey, cfg.AppSecret, cfg.ConsumerKey)
	if err != nil {
		return nil, fmt.Errorf("configure ovh client: %w", err)
	}

	rc := retryablehttp.NewClient()
	rc.Logger = leveledLogger{cfg.Log}
	rc.RetryMax = cfg.Retry.Max
	rc.RetryWaitMin = cfg.Retry.WaitMin
	rc.RetryWaitMax = cfg.Retry.WaitMax
	rc.CheckRetry = checkRetry
	// Hand the last reply to go-ovh so a 5xx still decodes into an
	// *ovh.APIError with its query id.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler

	c := &Client{
		log:     cfg.Log,
		poll:    cfg.Poll,
		timeout: cfg.Timeout,
		api:     api,
	}
	std := rc.StandardClient()
	c.httpc = &http.Client{Transport: std.Transport, Timeout: cfg.Timeout}
	api.Client = std
	api.Timeout = cfg.Timeout
	api.Logger = redactingLogger{cfg.Log}
	return c, nil
}

// methodKey marks a request's context with its HTTP method for checkRetry,
// which sees no request when the connection failed.
type methodKey struct{}

// checkRetry retries connection errors, 429 and 5xx, but only for idempotent
// methods: a POST whose reply is lost has an unknown outcome, and is
// investigated by observing, never resent.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		// Stop; the caller sees the context error (returning it here
		// would make net/http log "RoundTripper returned a response & error").
		return false, nil
	}
	method, _ := ctx.Value(methodKey{}).(string)
	if method == "" && resp != nil && resp.Request != nil {
		method = resp.Request.Method
	}
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodDelete:
	default:
		return false, nil
	}
	if err != nil {
		return true, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
		return true, nil
	}
	return false, nil
}

// notSentError marks an error that happened before the request left: the
// call certainly had no effect.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// call performs one API call. in is marshalled as the JSON body (nil: none),
// the reply is decoded into out (nil: ignored). A 400 "invalid signature"
// (the clock drifted since go-ovh measured it) makes the client measure the
// clock again and resend once: the refused request had no effect.
func (c *Client) call(ctx context.Context, method, path string, in, out any) (string, error) {
	qid, err := c.do(ctx, method, path, in, out)
	if badSignature(err) {
		c.log.Warn().Str("method", method).Str("path", path).Msg("ovh refused the signature; measuring the clock offset again")
		if rerr := c.resetClock(); rerr != nil {
			return qid, err
		}
		qid, err = c.do(ctx, method, path, in, out)
	}
	return qid, err
}

// do returns the reply's query id along with the error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", &notSentError{err}
	}
	c.mu.Lock()
	api := c.api
	req, err := api.NewRequest(method, path, in, true)
	c.mu.Unlock()
	if err != nil {
		return "", &notSentError{fmt.Errorf("prepare %s %s: %w", method, path, err)}
	}
	req = req.WithContext(context.WithValue(ctx, methodKey{}, method))
	api.Logger.LogRequest(req)
	start := time.Now()
	resp, err := c.httpc.Do(req)
	if err != nil {
		c.log.Debug().Str("method", method).Str("path", path).Dur("took", time.Since(start)).Err(err).Msg("ovh call failed")
		if dialError(err) {
			return "", &notSentError{err}
		}
		return "", err
	}
	api.Logger.LogResponse(resp)
	qid := resp.Header.Get("X-Ovh-QueryID")
	retryAfter := resp.Header.Get("Retry-After")
	err = api.UnmarshalResponse(resp, out)
	c.log.Debug().Str("method", method).Str("path", path).Int("status", resp.StatusCode).
		Str("query_id", qid).Dur("took", time.Since(start)).Msg("ovh call")
	var ae *ovh.APIError
	if errors.As(err, &ae) && ae.Code == http.StatusTooManyRequests {
		return qid, &provider.RetryAfterError{After: parseRetryAfter(retryAfter), Err: err}
	}
	return qid, err
}

// resetClock rebuilds the go-ovh client, which measures the offset to the
// API's clock once per client, keeping credentials and endpoint.
func (c *Client) resetClock() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.api
	fresh, err := ovh.NewClient(old.Endpoint(), old.AppKey, old.AppSecret, old.ConsumerKey)
	if err != nil {
		return err
	}
	fresh.Client, fresh.Timeout, fresh.Logger, fresh.UserAgent = old.Client, old.Timeout, old.Logger, old.UserAgent
	c.api = fresh
	return nil
}

func badSignature(err error) bool {
	var ae *ovh.APIError
	return errors.As(err, &ae) && ae.Code == http.StatusBadRequest &&
		strings.Contains(strings.ToLower(ae.Message), "invalid signature")
}

func dialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func parseRetryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return time.Second
}

// wrap names the operation and adds the provider sentinel matching err.
func wrap(op string, err error) error {
	if s := sentinel(err); s != nil {
		return fmt.Errorf("%s: %w: %w", op, s, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// sentinel maps an API error to the provider vocabulary (nil: none fits;
// 5xx and network errors are left unclassified, i.e. transient).
func sentinel(err error) error {
	var ra *provider.RetryAfterError
	if errors.As(err, &ra) {
		return nil // already typed
	}
	var ae *ovh.APIError
	if !errors.As(err, &ae) {
		return nil
	}
	switch c := ae.Code; {
	case c == http.StatusNotFound:
		return provider.ErrNotFound
	case c == http.StatusConflict:
		return provider.ErrBusy
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		return provider.ErrAuth
	case c == http.StatusBadRequest && badSignature(err):
		return provider.ErrAuth
	case c >= 400 && c < 500:
		return provider.ErrPermanent
	}
	return nil
}

// unknownOutcome reports whether a failed POST may have taken effect.
func unknownOutcome(err error) bool {
	var ns *notSentError
	if errors.As(err, &ns) {
		return false
	}
	var ra *provider.RetryAfterError
	if errors.As(err, &ra) {
		return false
	}
	var ae *ovh.APIError
	if errors.As(err, &ae) {
		return ae.Code >= 500
	}
	return true // network error, timeout, undecodable 2xx reply
}

// leveledLogger adapts zerolog to retryablehttp.LeveledLogger. retryablehttp
// logs methods and URLs only, never headers.
type leveledLogger struct{ log zerolog.Logger }

func (l leveledLogger) Error(msg string, kv ...any) { l.emit(l.log.Warn(), msg, kv) }
func (l leveledLogger) Warn(msg string, kv ...any)  { l.emit(l.log.Warn(), msg, kv) }
func (l leveledLogger) Info(msg string, kv ...any)  { l.emit(l.log.Info(), msg, kv) }
func (l leveledLogger) Debug(msg string, kv ...any) { l.emit(l.log.Debug(), msg, kv) }

func (l leveledLogger) emit(e *zerolog.Event, msg string, kv []any) {
	if e == nil {
		return
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			k = fmt.Sprint(kv[i])
		}
		switch v := kv[i+1].(type) {
		case error:
			e = e.AnErr(k, v)
		default:
			e = e.Interface(k, v)
		}
	}
	e.Str("component", "retryablehttp").Msg(msg)
}

// redactedHeaders are never logged: they carry or derive from secrets.
var redactedHeaders = []string{"X-Ovh-Signature", "X-Ovh-Consumer", "Authorization"}

// redactingLogger is the go-ovh request logger; it logs at trace level with
// secret-bearing headers redacted.
type redactingLogger struct{ log zerolog.Logger }

func (l redactingLogger) LogRequest(r *http.Request) {
	e := l.log.Trace()
	if e == nil {
		return
	}
	h := r.Header.Clone()
	for _, k := range redactedHeaders {
		if h.Get(k) != "" {
			h.Set(k, "REDACTED")
		}
	}
	e.Str("method", r.Method).Str("url", r.URL.String()).Interface("header", h).Msg("ovh request")
}

func (l redactingLogger) LogResponse(r *http.Response) {
	l.log.Trace().Int("status", r.StatusCode).Str("query_id", r.Header.Get("X-Ovh-QueryID")).Msg("ovh response")
}
