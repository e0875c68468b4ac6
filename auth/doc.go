// Package auth is sipedge's server side of SIP authentication: digest
// challenges and verification (RFC 3261 §22 on RFC 2617/7616, SHA-256 per
// RFC 8760), the user store, and the flood guard (per-source rate limit, ban
// after failed authentication, scanner drop).
//
// The package works on header values and addresses only; it imports no SIP
// library, so the pipeline in edge/ decides which header to read and how an
// error becomes a response:
//
//	ErrNoCredentials               → challenge (401/407)
//	ErrStale                       → challenge with stale=true; not a failure
//	ErrUnknownUser, ErrBadResponse,
//	ErrBadNonce                    → 403 (or 401), Guard.AuthFailed
//	ErrMalformed                   → 400
//	ErrRealm, ErrAlgorithm,
//	ErrUnsupported                 → challenge again
//
// Hot paths (Digest.Verify, Guard.Allow, Guard.IsScanner, UserStore.Get) do
// not allocate in the common case and take no package-wide lock.
package auth

import "errors"

// Digest verification errors. Verify wraps none of them, so == works, but
// use errors.Is.
var (
	// ErrNoCredentials: the request carried no Authorization header value.
	ErrNoCredentials = errors.New("auth: no credentials")
	// ErrMalformed: the header could not be parsed or lacks a required
	// parameter.
	ErrMalformed = errors.New("auth: malformed credentials")
	// ErrRealm: the credentials are for another realm.
	ErrRealm = errors.New("auth: wrong realm")
	// ErrAlgorithm: the algorithm is not one we offer, or the user has no
	// HA1 for it.
	ErrAlgorithm = errors.New("auth: algorithm not offered")
	// ErrUnknownUser: the lookup does not know the user.
	ErrUnknownUser = errors.New("auth: unknown user")
	// ErrBadNonce: the nonce was not issued by us (wrong format or HMAC).
	ErrBadNonce = errors.New("auth: invalid nonce")
	// ErrStale: the nonce is ours and the response is right, but the nonce
	// has expired: challenge again with stale=true.
	ErrStale = errors.New("auth: stale nonce")
	// ErrBadResponse: wrong password (the response does not match).
	ErrBadResponse = errors.New("auth: wrong response")
	// ErrUnsupported: a digest feature we do not implement (qop=auth-int,
	// userhash, a scheme other than Digest).
	ErrUnsupported = errors.New("auth: unsupported")
)

// User store and configuration errors.
var (
	// ErrInvalidUser: a user record fails validation (name, HA1, NAT).
	ErrInvalidUser = errors.New("auth: invalid user")
	// ErrConfigUser: a write to a LayeredUsers names a user defined in the
	// top (configuration) layer; the write would be invisible.
	ErrConfigUser = errors.New("auth: user is defined in the configuration")
	// ErrConfig: NewDigest or NewGuard was given an unusable setting.
	ErrConfig = errors.New("auth: invalid configuration")
)
