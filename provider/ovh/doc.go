// Package ovh implements [provider.Provider] on the OVHcloud API v1 through
// github.com/ovh/go-ovh.
//
// Transport. Requests go through go-retryablehttp with a policy of our own:
// connection errors, 429 and 5xx are retried with backoff for GET, PUT and
// DELETE only. A POST (reboot, IP move) is sent exactly once, because
// replaying it could reboot a server twice. [Config.Timeout] caps one call
// including its retries.
//
// Unknown outcomes. When the reply to a reboot or move is lost (network
// error, timeout, 5xx), the client observes instead of resending: it lists
// the server's or IP's tasks of that function again and adopts the task that
// was not there before the POST; for a move it also accepts the IP already
// being routed to the target. If it still cannot tell, the error wraps
// [provider.ErrUnknownOutcome].
//
// Errors. Every error names the operation and the server or IP, wraps one
// of the provider sentinels chosen from the HTTP status (404 ErrNotFound, 409
// ErrBusy, 401/403 ErrAuth, other 4xx ErrPermanent, 429
// *provider.RetryAfterError), and wraps the *ovh.APIError, whose text holds
// OVH's query id.
//
// Secrets. The application secret and consumer key are never logged: the
// request logger redacts X-Ovh-Signature, X-Ovh-Consumer and Authorization,
// and the retry logger sees only methods and URLs.
package ovh
