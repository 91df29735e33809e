// Package runbooks reads, checks and describes takeover runbooks: YAML files
// that name the primary, the spare, the data path, the services and the
// failover IPs of one takeover. Decoding is strict (unknown keys, wrong types
// and bad values are errors naming file:line:column with a hint) and a
// decoded [Runbook] has passed semantic validation.
package runbooks
