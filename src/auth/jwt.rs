//! Ed25519 bearer tokens (compact JWS, `alg: EdDSA`): the trusted key ring, the revocation
//! list, the verifier with its small cache of verified tokens, and the device's signer.
//! jwt-simple checks the signature; the claim rules (leeway, `iss`, `aud`, revocation) are ours,
//! so that every refusal has exactly one stable audit reason.

use super::api_key::sha256;
use super::{AuthError, Method, Principal, TokenFailure};
use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use jwt_simple::JWTError;
use jwt_simple::prelude::{
    Audiences, Ed25519KeyPair, Ed25519PublicKey, EdDSAKeyPairLike, EdDSAPublicKeyLike, JWTClaims,
    NoCustomClaims, Token, UnixTimeStamp, VerificationOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The only algorithm accepted. jwt-simple would also take the RFC 9864 name `Ed25519`; we
/// hold issuers to the one name the design promises.
const ALG: &str = "EdDSA";
/// Verified tokens remembered per verifier; a device sees few distinct tokens at once.
const CACHE_CAPACITY: usize = 1024;
/// Upper bound on the configured leeway: more would let stale tokens live on, and keeps
/// jwt-simple's fixed-point timestamp arithmetic far from overflow.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 3600);

/// What a token must satisfy besides its signature. Built from `[auth]` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` (a string or an array) must contain it.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (whole seconds; capped at one day).
    pub leeway: Duration,
    /// Longest token accepted; longer ones are refused before any parsing.
    pub max_token_bytes: usize,
}

impl Default for TokenPolicy {
    /// No `iss`/`aud` requirement, 60 s leeway, 8 KiB tokens: what a device without explicit
    /// settings should enforce.
    fn default() -> Self {
        TokenPolicy {
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(60),
            max_token_bytes: 8 * 1024,
        }
    }
}

struct TrustedKey {
    key: Ed25519PublicKey,
    raw: Vec<u8>,
}

/// Trusted Ed25519 public keys from a folder: each `<kid>.pem` (SPKI PEM, as `inferd init`/
/// `keygen` write) is one key; the file stem is its kid. Several keys at once allow rotation.
pub struct TrustedKeys {
    keys: BTreeMap<String, TrustedKey>,
}

impl TrustedKeys {
    /// No keys: every token is refused with `unknown_kid`. A start point for [`Self::add`].
    pub fn empty() -> TrustedKeys {
        TrustedKeys {
            keys: BTreeMap::new(),
        }
    }

    /// Loads every `*.pem` in `dir` (other files and dot-files are skipped, so editors' and
    /// atomic writers' temp files do no harm). Any unreadable or non-Ed25519 `.pem` fails the
    /// whole load, naming the file: a half-loaded ring would silently refuse a fleet's tokens.
    pub fn load_dir(dir: &Path) -> Result<TrustedKeys, AuthError> {
        let err = |path: &Path, reason: String| AuthError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
        let mut keys = TrustedKeys::empty();
        for entry in entries {
            let path = entry.map_err(|e| err(dir, e.to_string()))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(kid) = name.strip_suffix(".pem") else {
                continue;
            };
            if kid.is_empty() || name.starts_with('.') || !path.is_file() {
                continue;
            }
            let pem = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
            let key = Ed25519PublicKey::from_pem(&pem).map_err(|_| {
                err(
                    &path,
                    "not an Ed25519 public key in SPKI PEM (BEGIN PUBLIC KEY)".into(),
                )
            })?;
            keys.insert(kid.to_owned(), key);
        }
        Ok(keys)
    }

    /// Trusts a raw 32-byte Ed25519 public key under `kid` (replacing any key of that kid);
    /// for a device that verifies the tokens it signs itself, and for tests.
    pub fn add(&mut self, kid: &str, public_key: &[u8]) -> Result<(), AuthError> {
        let key = Ed25519PublicKey::from_bytes(public_key).map_err(|_| AuthError::KeyFile {
            path: kid.to_owned(),
            reason: "not a valid Ed25519 public key".into(),
        })?;
        self.insert(kid.to_owned(), key);
        Ok(())
    }

    fn insert(&mut self, kid: String, key: Ed25519PublicKey) {
        let raw = key.to_bytes();
        self.keys.insert(kid, TrustedKey { key, raw });
    }

    /// How many keys are trusted (for the startup summary).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted (then bearer tokens should not be offered at all).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted keys as an RFC 8037 JWK set, for `GET /.well-known/jwks.json`:
    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","x":..,"kid":..,"use":"sig","alg":"EdDSA"}]}`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|(kid, k)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64url(&k.raw),
                    "kid": kid,
                    "use": "sig",
                    "alg": ALG,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Revoked token ids and subjects: TOML file `jti = ["..."]` and `sub = ["..."]` (both
/// optional). Unknown keys are refused, so that a typo cannot silently revoke nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    #[serde(default)]
    jti: HashSet<String>,
    #[serde(default)]
    sub: HashSet<String>,
}

impl Revocations {
    /// Nothing revoked: for devices without a revocations file.
    pub fn empty() -> Self {
        Revocations::default()
    }

    /// Parses a revocations file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Revocations, AuthError> {
        toml::from_str(text).map_err(|e| AuthError::RevocationsFile {
            path: path.display().to_string(),
            reason: crate::config::toml_reason(text, &e),
        })
    }

    /// Reads and parses a revocations file (at start and on SIGHUP).
    pub fn load(path: &Path) -> Result<Revocations, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::RevocationsFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Revocations::parse(&text, path)
    }

    /// Whether a token with this `jti` or `sub` must be refused.
    pub fn is_revoked(&self, jti: Option<&str>, sub: Option<&str>) -> bool {
        jti.is_some_and(|j| self.jti.contains(j)) || sub.is_some_and(|s| self.sub.contains(s))
    }
}

/// A verified token as remembered by the cache: what a repeat sighting must re-check.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    kid: String,
    jti: Option<String>,
    /// `exp`, unix seconds.
    exp: f64,
    /// The later of `nbf` and `iat`, unix seconds.
    valid_from: Option<f64>,
}

/// `aud` may be one string or an array (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// The claims we read, parsed from the payload after its signature has been checked.
/// NumericDates are `f64`: RFC 7519 allows fractions, and it keeps huge values exact enough.
#[derive(Deserialize)]
struct Payload {
    sub: Option<String>,
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    jti: Option<String>,
    scope: Option<String>,
    scp: Option<Vec<String>>,
    client_id: Option<String>,
}

/// The token's scopes, from `scope` (space-separated, RFC 8693) and `scp` (a list), each once.
fn scopes_of(claims: &Payload) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    let named = claims.scope.iter().flat_map(|s| s.split_whitespace());
    for scope in named.chain(claims.scp.iter().flatten().map(String::as_str)) {
        if !scope.is_empty() && !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

/// Verifies bearer tokens offline against the trusted keys, the policy and the revocations.
/// Built once at start and rebuilt whole on reload (which also empties its cache).
pub struct TokenVerifier {
    keys: TrustedKeys,
    policy: TokenPolicy,
    revocations: Revocations,
    /// SHA-256 of the whole token -> what verifying it established.
    cache: Mutex<HashMap<[u8; 32], Verified>>,
}

impl TokenVerifier {
    /// A verifier with an empty cache. The leeway is capped at one day.
    pub fn new(keys: TrustedKeys, policy: TokenPolicy, revocations: Revocations) -> TokenVerifier {
        let policy = TokenPolicy {
            leeway: policy.leeway.min(MAX_LEEWAY),
            ..policy
        };
        TokenVerifier {
            keys,
            policy,
            revocations,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies a compact JWS. `now` is injected (tests, and the clock policy). A token seen
    /// before is answered from the cache after re-checking `exp`/`nbf` and revocation, so
    /// devices presenting the same token on every request pay for the signature once.
    /// Failures carry the header's `kid` once read, and the `sub` only from a payload whose
    /// signature verified (an unverified `sub` would let anyone write the audit log).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Principal, AuthError> {
        if token.len() > self.policy.max_token_bytes {
            return Err(fail("too_long", None, None));
        }
        let now = unix_seconds(now);
        let digest = sha256(token.as_bytes());
        let cached = self.lock_cache().get(&digest).cloned();
        if let Some(verified) = cached {
            let checked = self.recheck(&verified, now);
            if checked.is_err() && verified.exp + self.leeway() <= now {
                self.lock_cache().remove(&digest);
            }
            return checked;
        }
        let verified = self.verify_uncached(token, now)?;
        let principal = verified.principal.clone();
        self.remember(digest, verified, now);
        Ok(principal)
    }

    /// The trusted keys as a JWK set (see [`TrustedKeys::jwks`]).
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    /// How many trusted keys this verifier holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn leeway(&self) -> f64 {
        self.policy.leeway.as_secs() as f64
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        // A panic while holding the lock cannot leave a half-written entry behind (inserts
        // and removes are single calls), so a poisoned cache is still consistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, digest: [u8; 32], verified: Verified, now: f64) {
        let leeway = self.leeway();
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, v| v.exp + leeway > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(digest, verified);
    }

    /// The checks that depend on `now` or on the revocation list, i.e. what a cached verdict
    /// must repeat.
    fn recheck(&self, v: &Verified, now: f64) -> Result<Principal, AuthError> {
        let sub = Some(v.principal.id.as_str());
        self.check_time(v.exp, v.valid_from, now, &v.kid, sub)?;
        if self.revocations.is_revoked(v.jti.as_deref(), sub) {
            return Err(fail("revoked", Some(&v.kid), sub));
        }
        Ok(v.principal.clone())
    }

    fn check_time(
        &self,
        exp: f64,
        valid_from: Option<f64>,
        now: f64,
        kid: &str,
        sub: Option<&str>,
    ) -> Result<(), AuthError> {
        let leeway = self.leeway();
        if exp + leeway <= now {
            return Err(fail("expired", Some(kid), sub));
        }
        if valid_from.is_some_and(|t| t - leeway > now) {
            return Err(fail("not_yet_valid", Some(kid), sub));
        }
        Ok(())
    }

    fn verify_uncached(&self, token: &str, now: f64) -> Result<Verified, AuthError> {
        let mut parts = token.split('.');
        let (Some(_), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("malformed", None, None));
        };
        let (kid, key) = self.signing_key(token)?;
        let mut signature = [0u8; 64];
        match Base64UrlSafeNoPadding::decode(&mut signature, signature_b64, None) {
            Ok(s) if s.len() == 64 => {}
            Ok(_) | Err(ct_codecs::Error::Overflow) => {
                return Err(fail("bad_signature", Some(kid), None));
            }
            Err(_) => return Err(fail("malformed", Some(kid), None)),
        }
        self.check_signature(key, token, kid, now)?;
        let claims: Payload = Base64UrlSafeNoPadding::decode_to_vec(payload_b64, None)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| fail("malformed", Some(kid), None))?;
        self.check_claims(claims, kid, now)
    }

    /// The key the token's header names: EdDSA only, a `kid` we trust.
    /// The kid is the map's own copy, so nothing is allocated per token.
    fn signing_key(&self, token: &str) -> Result<(&str, &TrustedKey), AuthError> {
        let header = Token::decode_metadata(token).map_err(|_| fail("malformed", None, None))?;
        let kid = header.key_id().filter(|k| !k.is_empty());
        if header.algorithm() != ALG {
            return Err(fail("wrong_alg", kid, None));
        }
        let kid = kid.ok_or_else(|| fail("missing_kid", None, None))?;
        let (kid, key) = self
            .keys
            .keys
            .get_key_value(kid)
            .ok_or_else(|| fail("unknown_kid", Some(kid), None))?;
        Ok((kid.as_str(), key))
    }

    /// jwt-simple checks the signature, then its own view of the time claims. Its time
    /// errors are only reachable once the signature is good; our rules (`check_claims`)
    /// decide them.
    fn check_signature(
        &self,
        key: &TrustedKey,
        token: &str,
        kid: &str,
        now: f64,
    ) -> Result<(), AuthError> {
        let options = VerificationOptions {
            required_key_id: Some(kid.to_owned()),
            time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(
                self.policy.leeway.as_secs(),
            )),
            artificial_time: Some(UnixTimeStamp::from_secs(now.max(0.0) as u64)),
            max_token_length: Some(self.policy.max_token_bytes),
            ..VerificationOptions::default()
        };
        let Err(e) = key.key.verify_token::<NoCustomClaims>(token, Some(options)) else {
            return Ok(());
        };
        let reason = match e.downcast_ref::<JWTError>() {
            Some(JWTError::TokenHasExpired)
            | Some(JWTError::TokenNotValidYet)
            | Some(JWTError::ClockDrift) => return Ok(()),
            Some(JWTError::InvalidSignature) => "bad_signature",
            Some(JWTError::AlgorithmMismatch) => "wrong_alg",
            Some(JWTError::KeyIdentifierMismatch) => "unknown_kid",
            Some(JWTError::MissingJWTKeyIdentifier) => "missing_kid",
            Some(JWTError::TokenTooLong) => "too_long",
            _ => "malformed",
        };
        Err(fail(reason, Some(kid), None))
    }

    /// The claims of a token whose signature is good: time, issuer, audience, revocation,
    /// subject; what the token establishes.
    fn check_claims(&self, claims: Payload, kid: &str, now: f64) -> Result<Verified, AuthError> {
        let sub = claims.sub.as_deref().filter(|s| !s.is_empty());
        let exp = claims
            .exp
            .ok_or_else(|| fail("missing_exp", Some(kid), sub))?;
        let valid_from = match (claims.nbf, claims.iat) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.check_time(exp, valid_from, now, kid, sub)?;
        if let Some(issuer) = &self.policy.issuer
            && claims.iss.as_ref() != Some(issuer)
        {
            return Err(fail("wrong_issuer", Some(kid), sub));
        }
        if let Some(audience) = &self.policy.audience
            && !claims.aud.as_ref().is_some_and(|aud| aud.names(audience))
        {
            return Err(fail("wrong_audience", Some(kid), sub));
        }
        if self.revocations.is_revoked(claims.jti.as_deref(), sub) {
            return Err(fail("revoked", Some(kid), sub));
        }
        let sub = sub.ok_or_else(|| fail("missing_sub", Some(kid), None))?;
        Ok(Verified {
            principal: Principal {
                id: sub.to_owned(),
                method: Method::Token,
                scopes: scopes_of(&claims),
                client: claims.client_id.clone(),
            },
            kid: kid.to_owned(),
            jti: claims.jti,
            exp,
            valid_from,
        })
    }

    #[cfg(test)]
    fn cached_len(&self) -> usize {
        self.lock_cache().len()
    }
}

/// What a signed token says. `jti` is optional; give one to make the token revocable on its
/// own (see [`random_jti`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    /// Written as the space-separated `scope` claim (omitted when empty).
    pub scopes: Vec<String>,
    /// `exp = now + ttl` (whole seconds, at least one).
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jti: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068 §2.2 `client_id`).
    pub client_id: Option<String>,
}

/// The extra claims we sign beyond the registered ones.
#[derive(Serialize)]
struct ScopeClaim {
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

/// The device's signing key for `POST /token` and `inferd token`.
pub struct TokenSigner {
    pair: Ed25519KeyPair,
    kid: String,
}

impl TokenSigner {
    /// Loads a PKCS#8 PEM Ed25519 private key, as `inferd init` (token/signing-key.pem) or
    /// `inferd keygen` write it (other tools' PKCS#8 `BEGIN PRIVATE KEY` files work too).
    pub fn load(path: &Path) -> Result<TokenSigner, AuthError> {
        let err = |reason: String| AuthError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let pair = Ed25519KeyPair::from_pem(&pem)
            .map_err(|_| err("not an Ed25519 private key in PKCS#8 PEM".into()))?;
        let kid = thumbprint(&pair.public_key().to_bytes());
        Ok(TokenSigner {
            pair: pair.with_key_id(&kid),
            kid,
        })
    }

    /// RFC 7638 thumbprint of its public key, identical to `keypair`'s kid
    /// (and so to the file stem of its public key in the trusted folder).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key, so that a device can trust what it signs.
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().to_bytes()
    }

    /// Signs `claims` as a compact JWS with `iat = nbf = now`, `exp = now + ttl`. Refuses what
    /// no verifier here would accept: an empty `sub`, a scope holding whitespace, a TTL under
    /// one second.
    pub fn sign(&self, claims: &Claims, now: SystemTime) -> Result<String, AuthError> {
        if claims.sub.is_empty() {
            return Err(AuthError::Sign("sub is empty".into()));
        }
        if claims
            .scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(AuthError::Sign(
                "a scope is empty or holds whitespace".into(),
            ));
        }
        let ttl = claims.ttl.as_secs();
        if ttl == 0 {
            return Err(AuthError::Sign("ttl must be at least one second".into()));
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AuthError::Sign("clock before 1970".into()))?
            .as_secs();
        let now_ts = UnixTimeStamp::from_secs(now);
        let scope = (!claims.scopes.is_empty()).then(|| claims.scopes.join(" "));
        let jwt = JWTClaims {
            issued_at: Some(now_ts),
            expires_at: Some(UnixTimeStamp::from_secs(now.saturating_add(ttl))),
            invalid_before: Some(now_ts),
            issuer: claims.issuer.clone(),
            subject: Some(claims.sub.clone()),
            audiences: claims.audience.clone().map(Audiences::AsString),
            jwt_id: claims.jti.clone(),
            nonce: None,
            custom: ScopeClaim {
                scope,
                client_id: claims.client_id.clone(),
            },
        };
        self.pair
            .sign(jwt)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }
}

/// A fresh random token id (128 bits, base64url) for [`Claims::jti`].
pub fn random_jti() -> Result<String, AuthError> {
    use ring::rand::SecureRandom;
    let mut raw = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| AuthError::Sign("system RNG failed".into()))?;
    Ok(b64url(&raw))
}

/// RFC 7638 thumbprint of an Ed25519 public key (raw 32 bytes):
/// base64url(SHA-256({"crv":"Ed25519","kty":"OKP","x":"<b64url x>"})). Used as the kid, so
/// any party holding the public key can recompute it.
pub fn thumbprint(public_key: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64url(public_key)
    );
    b64url(&sha256(canonical.as_bytes()))
}

fn b64url(bytes: &[u8]) -> String {
    // Invariant: encode_to_string sizes its own output, and encoding fails only on a short
    // output buffer.
    Base64UrlSafeNoPadding::encode_to_string(bytes).expect("base64url output buffer sized")
}

/// Seconds since the epoch, with the fraction (a clock before 1970 reads as 0).
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn fail(reason: &'static str, kid: Option<&str>, sub: Option<&str>) -> AuthError {
    AuthError::Token(TokenFailure {
        reason,
        kid: kid.map(str::to_owned),
        sub: sub.map(str::to_owned),
    })
}

/// A fresh Ed25519 token keypair: (private PEM, public PEM, kid). The kid is the RFC 7638
/// JWK thumbprint of the public key, so any party can recompute it.
pub fn keypair() -> (String, String, String) {
    let pair = Ed25519KeyPair::generate();
    let public = pair.public_key();
    let kid = thumbprint(&public.to_bytes());
    (pair.to_pem(), public.to_pem(), kid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: u64 = 1_750_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A throwaway issuer: hand-builds any header and payload, signed with Ed25519.
    struct Issuer {
        pair: ring::signature::Ed25519KeyPair,
        kid: String,
    }

    impl Issuer {
        fn new(seed: u8) -> Issuer {
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
            let kid = thumbprint(ring::signature::KeyPair::public_key(&pair).as_ref());
            Issuer { pair, kid }
        }

        fn public(&self) -> Vec<u8> {
            ring::signature::KeyPair::public_key(&self.pair)
                .as_ref()
                .to_vec()
        }

        fn signing_input(header: &Value, payload: &Value) -> String {
            format!(
                "{}.{}",
                b64url(header.to_string().as_bytes()),
                b64url(payload.to_string().as_bytes())
            )
        }

        fn token(&self, header: Value, payload: Value) -> String {
            let input = Self::signing_input(&header, &payload);
            let sig = self.pair.sign(input.as_bytes());
            format!("{input}.{}", b64url(sig.as_ref()))
        }

        fn eddsa(&self, payload: Value) -> String {
            self.token(
                json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}),
                payload,
            )
        }
    }

    /// A payload that passes [`policy`]; `changes` set fields, `null` removes them.
    fn claims(changes: Value) -> Value {
        let mut base = json!({
            "iss": "https://issuer.test", "sub": "device-1", "aud": "fleet",
            "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 600,
            "jti": "jti-1", "scope": "predict metrics",
        });
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: Some("https://issuer.test".into()),
            audience: Some("fleet".into()),
            leeway: Duration::from_secs(60),
            max_token_bytes: 4096,
        }
    }

    fn verifier_with(issuer: &Issuer, policy: TokenPolicy, revoked: &str) -> TokenVerifier {
        let mut keys = TrustedKeys::empty();
        keys.add(&issuer.kid, &issuer.public()).unwrap();
        let revocations = Revocations::parse(revoked, Path::new("revoked.toml")).unwrap();
        TokenVerifier::new(keys, policy, revocations)
    }

    fn verifier(issuer: &Issuer) -> TokenVerifier {
        verifier_with(issuer, policy(), "")
    }

    fn failure(result: Result<Principal, AuthError>) -> TokenFailure {
        match result {
            Err(AuthError::Token(f)) => f,
            other => panic!("expected a token failure, got {other:?}"),
        }
    }

    fn reason(v: &TokenVerifier, token: &str, now: u64) -> &'static str {
        failure(v.verify(token, at(now))).reason
    }

    #[test]
    fn thumbprint_matches_rfc8037_appendix_a3() {
        let x = Base64UrlSafeNoPadding::decode_to_vec(
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            None,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn valid_token_yields_sub_and_scopes() {
        let iss = Issuer::new(1);
        let p = verifier(&iss)
            .verify(&iss.eddsa(claims(json!({}))), at(NOW))
            .unwrap();
        assert_eq!(p.id, "device-1");
        assert_eq!(p.method, Method::Token);
        assert_eq!(p.scopes, vec!["predict", "metrics"]);
    }

    #[test]
    fn scp_array_and_audience_array_are_accepted() {
        let iss = Issuer::new(1);
        let t = iss.eddsa(claims(json!({
            "scope": null, "scp": ["predict:digits", "metrics"], "aud": ["other", "fleet"],
        })));
        let p = verifier(&iss).verify(&t, at(NOW)).unwrap();
        assert_eq!(p.scopes, vec!["predict:digits", "metrics"]);
    }

    #[test]
    fn without_policy_iss_and_aud_are_not_required() {
        let iss = Issuer::new(1);
        let open = TokenPolicy {
            issuer: None,
            audience: None,
            ..policy()
        };
        let t = iss.eddsa(claims(json!({"iss": null, "aud": null, "scope": null})));
        let p = verifier_with(&iss, open, "").verify(&t, at(NOW)).unwrap();
        assert!(p.scopes.is_empty());
    }

    #[test]
    fn oversized_token_is_too_long_before_parsing() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        assert_eq!(reason(&v, &"x".repeat(4097), NOW), "too_long");
        let padded = iss.eddsa(claims(json!({"pad": "p".repeat(5000)})));
        let f = failure(v.verify(&padded, at(NOW)));
        assert_eq!((f.reason, f.kid, f.sub), ("too_long", None, None));
    }

    #[test]
    fn garbage_is_malformed() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        let header = b64url(
            json!({"alg": "EdDSA", "kid": iss.kid})
                .to_string()
                .as_bytes(),
        );
        let good = iss.eddsa(claims(json!({})));
        let sig = good.rsplit('.').next().unwrap();
        for bad in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "!!!.e30.sig".into(),
            format!("{}.e30.{sig}", b64url(b"not json")),
            format!("{header}.e30.*{}", &sig[1..]),
            format!("{good}.extra"),
        ] {
            assert_eq!(reason(&v, &bad, NOW), "malformed", "{bad:?}");
        }
        // Properly signed, but the payload is not a JSON object of claims.
        let h = json!({"alg": "EdDSA", "kid": iss.kid});
        let input = format!("{}.{}", b64url(h.to_string().as_bytes()), b64url(b"[1,2]"));
        let t = format!(
            "{input}.{}",
            b64url(iss.pair.sign(input.as_bytes()).as_ref())
        );
        assert_eq!(reason(&v, &t, NOW), "malformed");
        // A claim of the wrong type is malformed too.
        let t = iss.eddsa(claims(json!({"exp": "tomorrow"})));
        assert_eq!(reason(&v, &t, NOW), "malformed");
        // jwt-simple refuses a `typ` that is not a JWT.
        let t = iss.token(
            json!({"alg": "EdDSA", "typ": "secevent", "kid": iss.kid}),
            claims(json!({})),
        );
        assert_eq!(reason(&v, &t, NOW), "malformed");
    }

    #[test]
    fn every_other_alg_is_wrong_alg() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        let payload = claims(json!({}));
        let hs256 = |secret: &[u8]| {
            let header = json!({"alg": "HS256", "typ": "JWT", "kid": iss.kid});
            let input = Issuer::signing_input(&header, &payload);
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            format!(
                "{input}.{}",
                b64url(ring::hmac::sign(&key, input.as_bytes()).as_ref())
            )
        };
        let pem = Ed25519PublicKey::from_bytes(&iss.public())
            .unwrap()
            .to_pem();
        let none = format!(
            "{}.",
            Issuer::signing_input(&json!({"alg": "none", "kid": iss.kid}), &payload)
        );
        let mut attacks = vec![none, hs256(&iss.public()), hs256(pem.as_bytes())];
        for alg in [
            "RS256", "ES256", "PS256", "HS512", "Ed25519", "eddsa", "EDDSA", "",
        ] {
            attacks.push(iss.token(json!({"alg": alg, "kid": iss.kid}), payload.clone()));
        }
        for t in attacks {
            let f = failure(v.verify(&t, at(NOW)));
            assert_eq!(f.reason, "wrong_alg", "{t}");
            assert_eq!(f.kid.as_deref(), Some(iss.kid.as_str()));
        }
        let no_alg = iss.token(json!({"kid": iss.kid}), payload);
        assert_eq!(reason(&v, &no_alg, NOW), "malformed");
    }

    #[test]
    fn kid_must_be_present_and_trusted() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        let payload = claims(json!({}));
        for header in [json!({"alg": "EdDSA"}), json!({"alg": "EdDSA", "kid": ""})] {
            let t = iss.token(header, payload.clone());
            assert_eq!(reason(&v, &t, NOW), "missing_kid");
        }
        let t = iss.token(json!({"alg": "EdDSA", "kid": "someone"}), payload);
        let f = failure(v.verify(&t, at(NOW)));
        assert_eq!(
            (f.reason, f.kid.as_deref()),
            ("unknown_kid", Some("someone"))
        );
    }

    #[test]
    fn tampered_or_foreign_signatures_are_bad_signature() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        let good = iss.eddsa(claims(json!({})));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = b64url(claims(json!({"sub": "admin"})).to_string().as_bytes());
        let tampered_payload = format!("{}.{forged}.{}", parts[0], parts[2]);
        let mut sig = Base64UrlSafeNoPadding::decode_to_vec(parts[2], None).unwrap();
        sig[10] ^= 1;
        let tampered_sig = format!("{}.{}.{}", parts[0], parts[1], b64url(&sig));
        let short_sig = format!("{}.{}.{}", parts[0], parts[1], b64url(&sig[..32]));
        let long_sig = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            b64url(&[sig.clone(), sig].concat())
        );
        // Another key's signature under the trusted kid.
        let mallory = Issuer::new(2);
        let foreign = mallory.token(
            json!({"alg": "EdDSA", "typ": "JWT", "kid": iss.kid}),
            claims(json!({})),
        );
        for t in [tampered_payload, tampered_sig, short_sig, long_sig, foreign] {
            let f = failure(v.verify(&t, at(NOW)));
            assert_eq!(f.reason, "bad_signature", "{t}");
            assert_eq!(f.sub, None, "an unverified sub is never reported");
        }
    }

    #[test]
    fn token_without_exp_is_refused() {
        let iss = Issuer::new(1);
        let t = iss.eddsa(claims(json!({"exp": null})));
        let f = failure(verifier(&iss).verify(&t, at(NOW)));
        assert_eq!(
            (f.reason, f.sub.as_deref()),
            ("missing_exp", Some("device-1"))
        );
    }

    #[test]
    fn expiry_honours_leeway_to_the_second() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        let t = iss.eddsa(claims(json!({"exp": NOW})));
        assert!(v.verify(&t, at(NOW + 59)).is_ok());
        let f = failure(v.verify(&t, at(NOW + 60)));
        assert_eq!(
            (f.reason, f.kid.as_deref(), f.sub.as_deref()),
            ("expired", Some(iss.kid.as_str()), Some("device-1"))
        );
        let fresh = verifier(&iss);
        assert_eq!(reason(&fresh, &t, NOW + 60), "expired");
        assert!(
            fresh
                .verify(&t, at(NOW + 59) + Duration::from_millis(999))
                .is_ok()
        );
        let fractional = iss.eddsa(claims(json!({"exp": NOW as f64 + 0.5})));
        assert!(fresh.verify(&fractional, at(NOW + 60)).is_ok());
    }

    #[test]
    fn nbf_or_iat_in_the_future_is_not_yet_valid() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        let t = iss.eddsa(claims(json!({"nbf": NOW + 61, "iat": NOW})));
        assert_eq!(reason(&v, &t, NOW), "not_yet_valid");
        let t = iss.eddsa(claims(json!({"nbf": NOW + 60, "iat": NOW})));
        assert!(v.verify(&t, at(NOW)).is_ok());
        let t = iss.eddsa(claims(json!({"nbf": null, "iat": NOW + 61})));
        assert_eq!(reason(&v, &t, NOW), "not_yet_valid");
        let t = iss.eddsa(claims(json!({"nbf": null, "iat": NOW + 60})));
        assert!(v.verify(&t, at(NOW)).is_ok());
        let t = iss.eddsa(claims(json!({"nbf": null, "iat": null})));
        assert!(v.verify(&t, at(NOW)).is_ok());
    }

    #[test]
    fn issuer_and_audience_must_match_when_configured() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        for (changes, expected) in [
            (json!({"iss": "https://evil.test"}), "wrong_issuer"),
            (json!({"iss": null}), "wrong_issuer"),
            (json!({"aud": "elsewhere"}), "wrong_audience"),
            (json!({"aud": ["a", "b"]}), "wrong_audience"),
            (json!({"aud": []}), "wrong_audience"),
            (json!({"aud": null}), "wrong_audience"),
        ] {
            let t = iss.eddsa(claims(changes.clone()));
            let f = failure(v.verify(&t, at(NOW)));
            assert_eq!(f.reason, expected, "{changes}");
            assert_eq!(f.sub.as_deref(), Some("device-1"));
        }
    }

    #[test]
    fn revoked_jti_or_sub_is_refused() {
        let iss = Issuer::new(1);
        let v = verifier_with(&iss, policy(), "jti = [\"jti-bad\"]\nsub = [\"stolen\"]\n");
        let t = iss.eddsa(claims(json!({"jti": "jti-bad"})));
        assert_eq!(reason(&v, &t, NOW), "revoked");
        let t = iss.eddsa(claims(json!({"sub": "stolen", "jti": null})));
        let f = failure(v.verify(&t, at(NOW)));
        assert_eq!((f.reason, f.sub.as_deref()), ("revoked", Some("stolen")));
        assert!(v.verify(&iss.eddsa(claims(json!({}))), at(NOW)).is_ok());
    }

    #[test]
    fn token_without_sub_is_refused() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        for changes in [json!({"sub": null}), json!({"sub": ""})] {
            let f = failure(v.verify(&iss.eddsa(claims(changes)), at(NOW)));
            assert_eq!((f.reason, f.sub), ("missing_sub", None));
        }
    }

    #[test]
    fn repeat_verification_is_cached_but_rechecks_the_clock() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        let t = iss.eddsa(claims(json!({"nbf": NOW, "exp": NOW + 600})));
        let first = v.verify(&t, at(NOW)).unwrap();
        assert_eq!(v.cached_len(), 1);
        assert_eq!(v.verify(&t, at(NOW + 1)).unwrap(), first);
        assert_eq!(v.cached_len(), 1);
        // Same token, a clock now before nbf - leeway: refused from the cache too.
        assert_eq!(reason(&v, &t, NOW - 61), "not_yet_valid");
        // Past exp + leeway: refused, and forgotten.
        let f = failure(v.verify(&t, at(NOW + 660)));
        assert_eq!((f.reason, f.sub.as_deref()), ("expired", Some("device-1")));
        assert_eq!(v.cached_len(), 0);
        // Failures are never cached.
        let bad = iss.eddsa(claims(json!({"aud": "x"})));
        assert_eq!(reason(&v, &bad, NOW), "wrong_audience");
        assert_eq!(v.cached_len(), 0);
    }

    #[test]
    fn cached_revocation_is_rechecked() {
        let iss = Issuer::new(1);
        let revocations = Revocations::parse("sub = [\"device-1\"]", Path::new("r")).unwrap();
        let v = verifier_with(&iss, policy(), "");
        let t = iss.eddsa(claims(json!({})));
        let verified = {
            v.verify(&t, at(NOW)).unwrap();
            v.lock_cache().values().next().unwrap().clone()
        };
        let strict = TokenVerifier {
            revocations,
            ..verifier(&iss)
        };
        assert_eq!(
            failure(strict.recheck(&verified, NOW as f64)).reason,
            "revoked"
        );
    }

    #[test]
    fn cache_stays_bounded() {
        let iss = Issuer::new(1);
        let v = verifier(&iss);
        for i in 0..CACHE_CAPACITY + 10 {
            let t = iss.eddsa(claims(json!({ "jti": format!("j{i}") })));
            v.verify(&t, at(NOW)).unwrap();
            assert!(v.cached_len() <= CACHE_CAPACITY);
        }
    }

    #[test]
    fn revocations_file_is_optional_per_list_and_strict_about_keys() {
        let r = Revocations::parse("jti = [\"a\"]", Path::new("r.toml")).unwrap();
        assert!(r.is_revoked(Some("a"), None));
        assert!(!r.is_revoked(Some("b"), Some("a")));
        assert!(!Revocations::empty().is_revoked(Some("a"), Some("a")));
        let e = Revocations::parse("subs = [\"a\"]", Path::new("r.toml")).unwrap_err();
        assert_eq!(e.reason(), "revocations_file");
        assert!(e.to_string().contains("r.toml"));
        let e = Revocations::load(Path::new("/nonexistent/revoked.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/revoked.toml"));
    }

    #[test]
    fn trusted_keys_load_from_a_folder_and_publish_jwks() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, public_pem, kid) = keypair();
        std::fs::write(tmp.path().join(format!("{kid}.pem")), &public_pem).unwrap();
        std::fs::write(tmp.path().join("README.txt"), "not a key").unwrap();
        std::fs::write(tmp.path().join(".x.pem"), "half-written").unwrap();
        std::fs::write(tmp.path().join(".x.pem.tmp.1"), "half-written").unwrap();
        let keys = TrustedKeys::load_dir(tmp.path()).unwrap();
        assert_eq!(keys.len(), 1);
        let jwks = keys.jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kid"], kid.as_str());
        assert_eq!(
            (&jwk["kty"], &jwk["crv"], &jwk["alg"], &jwk["use"]),
            (
                &json!("OKP"),
                &json!("Ed25519"),
                &json!("EdDSA"),
                &json!("sig")
            )
        );
        let x = Base64UrlSafeNoPadding::decode_to_vec(jwk["x"].as_str().unwrap(), None).unwrap();
        assert_eq!(
            thumbprint(&x),
            kid,
            "the kid is the x's RFC 7638 thumbprint"
        );
        let v = TokenVerifier::new(keys, policy(), Revocations::empty());
        assert_eq!(v.jwks(), jwks);
    }

    #[test]
    fn bad_key_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("k1.pem"),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n",
        )
        .unwrap();
        let e = TrustedKeys::load_dir(tmp.path()).err().unwrap();
        assert_eq!(e.reason(), "key_file");
        assert!(e.to_string().contains("k1.pem"), "{e}");
        let missing = tmp.path().join("nope");
        let e = TrustedKeys::load_dir(&missing).err().unwrap();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = TokenSigner::load(&tmp.path().join("k1.pem")).err().unwrap();
        assert!(e.to_string().contains("k1.pem"), "{e}");
    }

    #[test]
    fn signed_tokens_verify_and_the_kid_matches_provisioning() {
        let tmp = tempfile::tempdir().unwrap();
        let (private_pem, public_pem, kid) = keypair();
        let key_path = tmp.path().join("signing-key.pem");
        std::fs::write(&key_path, private_pem).unwrap();
        std::fs::create_dir(tmp.path().join("trusted")).unwrap();
        std::fs::write(tmp.path().join(format!("trusted/{kid}.pem")), public_pem).unwrap();
        let signer = TokenSigner::load(&key_path).unwrap();
        assert_eq!(signer.kid(), kid);
        assert_eq!(thumbprint(&signer.public_key()), kid);
        let keys = TrustedKeys::load_dir(&tmp.path().join("trusted")).unwrap();
        let v = TokenVerifier::new(keys, policy(), Revocations::empty());
        let jti = random_jti().unwrap();
        let claims = Claims {
            client_id: None,
            sub: "app".into(),
            scopes: vec!["predict".into(), "metrics".into()],
            ttl: Duration::from_secs(3600),
            issuer: Some("https://issuer.test".into()),
            audience: Some("fleet".into()),
            jti: Some(jti.clone()),
        };
        let token = signer.sign(&claims, at(NOW)).unwrap();
        let p = v.verify(&token, at(NOW)).unwrap();
        assert_eq!((p.id.as_str(), p.scopes.len()), ("app", 2));
        assert_eq!(reason(&v, &token, NOW + 3660), "expired");
        let payload = token.split('.').nth(1).unwrap();
        let payload: Value =
            serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(payload, None).unwrap())
                .unwrap();
        assert_eq!(payload["jti"], jti.as_str());
        assert_eq!(payload["exp"], NOW + 3600);
        assert_eq!(payload["iat"], NOW);
        assert_eq!(payload["scope"], "predict metrics");
        let header = Token::decode_metadata(&token).unwrap();
        assert_eq!(
            (header.algorithm(), header.key_id()),
            ("EdDSA", Some(kid.as_str()))
        );
    }

    #[test]
    fn signer_refuses_claims_no_verifier_would_take() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k.pem");
        std::fs::write(&path, keypair().0).unwrap();
        let signer = TokenSigner::load(&path).unwrap();
        let ok = Claims {
            client_id: None,
            sub: "a".into(),
            scopes: vec!["predict".into()],
            ttl: Duration::from_secs(60),
            issuer: None,
            audience: None,
            jti: None,
        };
        assert!(signer.sign(&ok, at(NOW)).is_ok());
        for bad in [
            Claims {
                client_id: None,
                sub: String::new(),
                ..ok.clone()
            },
            Claims {
                client_id: None,
                scopes: vec!["predict metrics".into()],
                ..ok.clone()
            },
            Claims {
                client_id: None,
                scopes: vec![String::new()],
                ..ok.clone()
            },
            Claims {
                client_id: None,
                ttl: Duration::from_millis(999),
                ..ok.clone()
            },
        ] {
            assert_eq!(signer.sign(&bad, at(NOW)).unwrap_err().reason(), "sign");
        }
    }

    fn fixture_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt")
    }

    fn fixture_verifier() -> (TokenVerifier, Value) {
        let dir = fixture_dir();
        let policy: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("policy.json")).unwrap())
                .unwrap();
        let verifier = TokenVerifier::new(
            TrustedKeys::load_dir(&dir.join("trusted")).unwrap(),
            TokenPolicy {
                issuer: policy["issuer"].as_str().map(String::from),
                audience: policy["audience"].as_str().map(String::from),
                leeway: Duration::from_secs(policy["leeway_s"].as_u64().unwrap()),
                max_token_bytes: policy["max_token_bytes"].as_u64().unwrap() as usize,
            },
            Revocations::load(&dir.join("revocations.toml")).unwrap(),
        );
        (verifier, policy)
    }

    /// Tokens minted by PyJWT + cryptography (scripts/make_jwt_fixtures.py).
    #[test]
    fn foreign_library_fixtures_verify_as_stated() {
        let (v, policy) = fixture_verifier();
        let cases: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(fixture_dir().join("tokens.json")).unwrap(),
        )
        .unwrap();
        assert!(cases.len() >= 20);
        for case in &cases {
            let (name, token) = (
                case["name"].as_str().unwrap(),
                case["token"].as_str().unwrap(),
            );
            let now = at(case["now"].as_u64().unwrap());
            // Twice: the second answer may come from the cache and must agree.
            for _ in 0..2 {
                match (case["expect"].as_str().unwrap(), v.verify(token, now)) {
                    ("ok", Ok(p)) => {
                        assert_eq!(p.method, Method::Token);
                        if name == "valid" {
                            assert_eq!(p.id, policy["valid_sub"].as_str().unwrap());
                            assert_eq!(json!(p.scopes), policy["valid_scopes"]);
                        }
                    }
                    (expected, Err(AuthError::Token(f))) => {
                        assert_eq!(f.reason, expected, "fixture {name}");
                    }
                    (expected, got) => panic!("fixture {name}: expected {expected}, got {got:?}"),
                }
            }
        }
    }

    #[test]
    fn foreign_pkcs8_key_loads_as_signer_with_the_fixture_kid() {
        let (v, policy) = fixture_verifier();
        let signer = TokenSigner::load(&fixture_dir().join("signing-key.pem")).unwrap();
        assert_eq!(signer.kid(), policy["kid"].as_str().unwrap());
        let claims = Claims {
            client_id: None,
            sub: "device-42".into(),
            scopes: vec!["predict".into()],
            ttl: Duration::from_secs(600),
            issuer: policy["issuer"].as_str().map(String::from),
            audience: policy["audience"].as_str().map(String::from),
            jti: None,
        };
        let token = signer.sign(&claims, at(NOW)).unwrap();
        assert_eq!(v.verify(&token, at(NOW)).unwrap().id, "device-42");
    }
}
