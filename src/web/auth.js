/**
 * Signing in, and the session's token.
 * - Demo: `POST /app/demo/sign-in` (only when Careway runs with DEMO_SIGN_IN=true) returns a short-lived staff
 *   token for the demo coordinator.
 * - Production: SMART App Launch (standalone), authorization code with PKCE (S256). The endpoints come from
 *   Careway's `/.well-known/smart-configuration`; the client id and scopes from `/app/config.json`. The
 *   verifier and state wait in sessionStorage during the redirect; the code is exchanged once, then removed
 *   from the address bar, so neither the code nor the token stays in the URL or the history.
 * The token lives in sessionStorage only (gone when the tab closes), never in localStorage or a cookie.
 */
const TOKEN_KEY = 'careway.session';
const PKCE_KEY = 'careway.pkce';

const listeners = new Set();

export const session = {
  /** The bearer token, or undefined when none or expired. */
  token() {
    const s = this.current();
    return s?.accessToken;
  },
  current() {
    try {
      const s = JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? 'null');
      if (!s || typeof s.accessToken !== 'string') return undefined;
      if (s.expiresAt && s.expiresAt < Date.now()) return undefined;
      return s;
    } catch {
      return undefined;
    }
  },
  set(tokenResponse) {
    const s = {
      accessToken: tokenResponse.access_token,
      expiresAt: tokenResponse.expires_in ? Date.now() + tokenResponse.expires_in * 1000 : undefined,
      scope: tokenResponse.scope ?? '',
      fhirUser: tokenResponse.fhirUser ?? fhirUserOf(tokenResponse),
    };
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(s));
    for (const l of listeners) l(undefined);
  },
  clear(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    for (const l of listeners) l(reason);
  },
  /** Calls `fn(reason?)` when the session starts or ends. */
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};

/** fhirUser from the token response, or from an id_token's claims (SMART puts it there with `fhirUser`). */
function fhirUserOf(tokenResponse) {
  const jwt = tokenResponse.id_token ?? tokenResponse.access_token;
  try {
    const claims = JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof claims.fhirUser === 'string'
      ? claims.fhirUser.replace(/^.*\/(\w+\/[^/]+)$/, '$1')
      : undefined;
  } catch {
    return undefined;
  }
}

/** The app's sign-in settings from Careway (public). */
export async function appConfig() {
  const res = await fetch('/app/config.json');
  if (!res.ok) throw new Error(`the app's settings could not be read (${res.status})`);
  return res.json();
}

export async function demoSignIn() {
  const res = await fetch('/app/demo/sign-in', { method: 'POST' });
  if (!res.ok) throw new Error(`demo sign-in failed (${res.status})`);
  session.set(await res.json());
}

const base64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

/** RFC 7636: a random verifier (43+ characters) and its S256 challenge. */
export async function pkcePair() {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  return { verifier, challenge };
}

/** Where the authorization server sends the browser back: the app's own address, without query or hash. */
export const redirectUri = () => `${location.origin}/app/`;

async function smartConfiguration() {
  const res = await fetch('/.well-known/smart-configuration');
  if (!res.ok) throw new Error(`SMART discovery failed (${res.status})`);
  return res.json();
}

/** Starts a SMART standalone launch: redirects the browser to the authorization endpoint. */
export async function smartSignIn(config) {
  if (!config.clientId) throw new Error('SMART sign-in is not configured (APP_CLIENT_ID)');
  const smart = await smartConfiguration();
  if (!smart.authorization_endpoint)
    throw new Error('the authorization server has no authorization endpoint');
  if (!(smart.code_challenge_methods_supported ?? []).includes('S256'))
    throw new Error('the authorization server does not support PKCE with S256');
  const { verifier, challenge } = await pkcePair();
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem(
    PKCE_KEY,
    JSON.stringify({ verifier, state, tokenEndpoint: smart.token_endpoint, returnTo: location.hash }),
  );
  const url = new URL(smart.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: config.clientId,
    redirect_uri: redirectUri(),
    scope: config.scope,
    state,
    aud: new URL(config.fhirBase, location.origin).toString(),
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

/**
 * On the way back from the authorization server: checks the state, exchanges the code with the verifier, and
 * clears the query from the address bar. Returns true when a launch was completed.
 */
export async function completeSmartSignIn(config) {
  const q = new URLSearchParams(location.search);
  if (!q.has('code') && !q.has('error')) return false;
  const pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) ?? 'null');
  sessionStorage.removeItem(PKCE_KEY);
  // Whatever happens next, the code leaves the address bar and the history entry.
  history.replaceState(null, '', `/app/${pending?.returnTo ?? ''}`);
  if (q.has('error')) throw new Error(`sign-in was refused: ${q.get('error_description') ?? q.get('error')}`);
  if (!pending || pending.state !== q.get('state'))
    throw new Error('sign-in failed: the state does not match');
  const res = await fetch(pending.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: q.get('code'),
      redirect_uri: redirectUri(),
      client_id: config.clientId,
      code_verifier: pending.verifier,
    }).toString(),
  });
  if (!res.ok) throw new Error(`the token exchange failed (${res.status})`);
  session.set(await res.json());
  return true;
}
