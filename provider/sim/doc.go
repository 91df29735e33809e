// Package sim is an in-memory simulator of the OVHcloud API v1, speaking
// the wire protocol that go-ovh speaks: request signing, /auth/time, the
// /dedicated/server and /ip endpoints a takeover uses, tasks that progress
// with time, OVH's error bodies and the X-Ovh-QueryID header. A [Sim] is an
// http.Handler serving the API under /1.0 (and its alias /v1), so a real
// client is pointed at it with
//
//	s := sim.New(cfg)
//	srv := httptest.NewServer(s)
//	c, _ := ovh.NewClient(srv.URL+"/1.0", app.Key, app.Secret, app.Consumer)
//
// It is what provider/ovh is tested against, what the conformance suite
// provider/providertest runs on, and (through [Serve], [LoadConfig] and
// [OvhConf]) what `takeover sim serve` and the lab run. It is safe for
// concurrent use. Facts come from the team's OVH API reference notes
// (reference/ovh-api.md); this documentation lists every choice made where
// those notes are UNCERTAIN or silent.
//
// # Authentication
//
// GET /auth/time is unauthenticated and answers a bare integer, the
// simulator's time plus the skew set by [Sim.SetClockSkew]. Every other
// call must be signed: X-Ovh-Signature must equal [Sign] over the
// application secret, the consumer key, the method, the full URL exactly
// as sent (scheme "https" when the connection is TLS, else "http"; the
// Host header; r.RequestURI unchanged, so %2F stays escaped; query
// included), the raw body and X-Ovh-Timestamp. Checks run in this order,
// and refusals have these shapes (go-ovh reads only class and message):
//
//   - no X-Ovh-Application: 401 {"class":"Client::Unauthorized","message":"You must login first"}
//   - unknown application key: 403 {"errorCode":"INVALID_KEY","httpCode":"403 Forbidden","message":"Invalid application key"}
//   - no consumer key, timestamp or signature: 401, as for no application key
//   - unknown or revoked consumer key, or one of another application:
//     403 {"errorCode":"INVALID_CREDENTIAL","httpCode":"403 Forbidden","message":"This credential is not valid"}
//   - timestamp more than Config.SignatureWindow (default ±180 s) from the
//     simulator's skewed time, or a wrong signature:
//     400 {"errorCode":"INVALID_SIGNATURE","httpCode":"400 Bad Request","message":"Invalid signature"}
//   - call outside the consumer key's rules (App.Rules, "*" globbing):
//     403 {"errorCode":"NOT_GRANTED_CALL","httpCode":"403 Forbidden","message":"This call has not been granted"}
//
// Assumptions: the real skew tolerance is unknown (users report
// "Invalid signature" with 1 and 8 minutes of skew), so the window is
// configurable and its refusal is the signature error. The newer class
// shape for auth errors is used only for 401. Consumer keys are configured
// already validated; POST /auth/credential and OAuth2/bearer tokens are
// not simulated. GET /auth/currentCredential answers a minimal object.
//
// # Replies
//
// Every reply carries X-Ovh-QueryID ("SIM.ws-1.<start>.<n>.<hex>", unique
// per simulator). Business errors are {"class":"Client::NotFound",
// "message":"..."} (also Client::BadRequest 400, Client::Conflict 409,
// Client::MethodNotAllowed 405). An unknown path answers 404 "Got an
// invalid (or empty) URL". Void operations (PUT, task cancel, a successful
// ipCanBeMovedTo) answer 200 with the body null. Dates are RFC 3339 in
// Europe/Paris time (e.g. "2025-03-01T13:00:00+01:00").
//
// # Dedicated servers
//
// GET /dedicated/server, GET|PUT /dedicated/server/{sn}, GET .../boot
// (?bootType=), GET .../boot/{id}, POST .../reboot, GET .../task
// (?function= ?status=), GET .../task/{id}, POST .../task/{id}/cancel,
// GET .../ips, GET .../ipCanBeMovedTo?ip=, POST .../ipMove {"ip":...},
// GET .../intervention[/{id}] and .../plannedIntervention[/{id}] (always
// empty; [Sim.AddIntervention] adds interventions).
//
// PUT accepts the schema's writable fields (bootId, bootScript,
// efiBootloaderPath, rescueMail, rescueSshKey, monitoring, noIntervention,
// state, rootDevice); any other field, a bootId that is not one of the
// server's boots, a value of the wrong type or an unparsable SSH key
// answers 400 Client::BadRequest and changes nothing (assumed; OVH's exact
// answer is unknown). Nullable strings accept null to clear. Boots default
// to [DefaultBoots]; their descriptions are assumptions.
//
// # Tasks
//
// Task ids are global and increasing. A reboot creates {function
// "hardReboot", comment "Reboot asked"} that goes init → todo → doing →
// done: init for the first half of Latency.TaskStart, todo for the second,
// doing from TaskStart until at least RebootDoing later and until the
// OnReboot hook returned (the progression of reboots is an assumption
// copied from the reinstall example). The server comes up in the netboot
// set when the task enters doing (bootId is sticky; a later PUT does not
// change a reboot under way); a reboot into the "power" boot leaves
// powerState "poweroff". A move creates {function "genericMoveFloatingIp"}
// in state todo, doing from TaskStart, done at least MoveDoing later; the
// route changes only when it is done. POST /ip/{ip}/move puts the task in
// the IP's list (ip.IpTask with destination {serviceName}); POST
// /dedicated/server/{sn}/ipMove puts it in the destination server's list
// (a dedicated.server.Task; its function name is an assumption).
//
// Status is derived from the clock each time the simulator is observed:
// any request, and any Sim accessor, advances every pending task. With the
// real clock (Config.Clock nil) timers also advance tasks when their phases
// end; with an injected clock nothing happens until something looks, so
// tests advance the clock instead of sleeping. The passage into doing is
// made under the simulator's lock and starts the hook exactly once, however
// many readers race. Hooks ([Sim.OnReboot], [Sim.OnMove]) run in their own
// goroutine without the lock, so reads go on answering "doing" while a
// hook works; [Sim.WaitHooks] waits for them. A hook error ends the task in
// ovhError with no effect on the server or route.
//
// Assumptions where OVH's behaviour is unknown: a reboot while any task of
// the server is pending, and a move while a move of that IP is pending,
// answer 409 Client::Conflict; a move to the server the IP is already
// routed to answers 400 Client::BadRequest (as does ipCanBeMovedTo); a
// non-empty nexthop towards a dedicated server is 400; cancel works only
// in init or todo (then cancelled), otherwise 400. Move refusals for vMAC,
// region or Eco-range reasons are not simulated. Tasks are never purged
// unless [Sim.PurgeTask] says so.
//
// # IPs
//
// GET /ip (?ip= ?type= ?routedTo.serviceName=; other filters ignored), GET
// /ip/{ip}, GET|POST /ip/{ip}/move, POST /ip/{ip}/park, GET /ip/{ip}/task
// (?function= ?status=), GET /ip/{ip}/task/{id}. {ip} may be "1.2.3.4",
// "1.2.3.4/32" or "1.2.3.4%2F32"; replies always use the block form. A
// parked IP has routedTo {"serviceName":null}. version is the JSON number
// 4 or 6 (its JSON type is uncertain). Each server's main address is also
// an IP of type "dedicated", listed by GET /ip and by
// /dedicated/server/{sn}/ips, and cannot be moved. GET /ip/{ip}/move lists
// the other servers as dedicatedServer destinations without nexthop and
// every other family as an empty list. POST /ip/{ip}/move takes {"to":
// sn, "nexthop": null|""}; unknown fields are 400.
//
// # Faults and knobs
//
// [Sim.AddFault] makes matching requests fail with a status (500 and other
// 5xx: Server::InternalServerError; 502/503/504: an HTML page, as a gateway
// would send; 429: Client::TooManyRequests with Retry-After: 1; 404, 409,
// 400, 403 in the class shape), be delayed, or be processed and then lose
// their reply (the connection is aborted with http.ErrAbortHandler; note
// that net/http clients may silently resend an idempotent GET whose reply
// was lost on a reused connection). Faults are checked before
// authentication. [Sim.FailNextTask], [Sim.TransientTask404],
// [Sim.PurgeTask], [Sim.SetClockSkew], [Sim.RevokeConsumer] and
// Latency.ListLag reproduce the gotchas of reference section 5.
// [Sim.Counters] counts accepted reboot and move requests.
//
// # Debug endpoint
//
// GET /_sim/counters ([CountersPath]) answers [Sim.Counters] as JSON,
// {"reboots":{"<server>":n},"moves":{"<ip block>":n}}, so that tests and
// drills can check from outside the simulator's process (the lab runs it as
// a daemon) how many reboots and IP moves a run asked for. It is read-only,
// unauthenticated, outside the /1.0 API (OVH has no such path) and never
// subject to faults; any other method answers 405 Client::MethodNotAllowed.
//
// Not simulated: vRack, authenticationSecret, VNIs, reinstalls, IPv6
// specifics, rate limiting other than by faults.
package sim
