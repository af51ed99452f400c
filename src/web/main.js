/**
 * The care-team app's shell: sign-in, navigation, and the view the URL names. Plain ES modules (Preact + htm),
 * served by Careway from src/web with no build step.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { appConfig, completeSmartSignIn, demoSignIn, session, smartSignIn } from './auth.js';
import { useRoute } from './route.js';
import { Board } from './views/board.js';
import { Journey } from './views/journey.js';
import { Worklist } from './views/worklist.js';
import { Analytics } from './views/analytics.js';
import { Integration } from './views/integration.js';

const VIEWS = [
  { view: 'board', label: 'Journey board' },
  { view: 'worklist', label: 'Worklist' },
  { view: 'analytics', label: 'Analytics' },
  { view: 'integration', label: 'Integration' },
];

function SignIn({ config, message }) {
  const [error, setError] = useState();
  const [busy, setBusy] = useState(false);
  const go = (fn) => async () => {
    setBusy(true);
    setError(undefined);
    try {
      await fn();
    } catch (e) {
      setError(e.message);
      setBusy(false);
    }
  };
  return html`<main id="main" class="signin" data-testid="signin">
    <h1>Careway</h1>
    <p>Where each patient's journey stands, and where it is stuck.</p>
    ${message && html`<p class="notice" role="status">${message}</p>`}
    ${
      config.demoSignIn &&
      html`<button class="primary" data-testid="demo-sign-in" disabled=${busy} onClick=${go(demoSignIn)}>
        Demo sign-in
      </button>`
    }
    ${
      config.clientId
        ? html`<button data-testid="smart-sign-in" disabled=${busy} onClick=${go(() => smartSignIn(config))}>
            Sign in with your hospital account
          </button>`
        : !config.demoSignIn &&
          html`<p class="notice">Sign-in is not configured on this server (APP_CLIENT_ID).</p>`
    }
    ${error && html`<p class="error" role="alert" data-testid="signin-error">${error}</p>`}
  </main>`;
}

function Shell({ route }) {
  const who = session.current();
  let body;
  switch (route.view) {
    case 'journey':
      body = html`<${Journey} id=${route.id} />`;
      break;
    case 'worklist':
      body = html`<${Worklist} query=${route.query} />`;
      break;
    case 'analytics':
      body = html`<${Analytics} query=${route.query} />`;
      break;
    case 'integration':
      body = html`<${Integration} query=${route.query} id=${route.id} />`;
      break;
    default:
      body = html`<${Board} query=${route.query} />`;
  }
  return html`<div class="shell">
    <a
      class="skip"
      href="#main"
      onClick=${(e) => {
        e.preventDefault();
        document.getElementById('main')?.focus();
      }}
      >Skip to content</a
    >
    <header>
      <span class="brand">Careway</span>
      <nav aria-label="Views">
        <ul>
          ${VIEWS.map(
            (v) =>
              html`<li>
                <a
                  href=${`#/${v.view}`}
                  aria-current=${route.view === v.view ? 'page' : undefined}
                  data-testid=${`nav-${v.view}`}
                  >${v.label}</a
                >
              </li>`,
          )}
        </ul>
      </nav>
      <span class="who" data-testid="who">${who?.fhirUser ?? 'signed in'}</span>
      <button class="link" data-testid="sign-out" onClick=${() => session.clear()}>Sign out</button>
    </header>
    <main id="main" tabindex="-1">${body}</main>
  </div>`;
}

function App() {
  const route = useRoute();
  const [config, setConfig] = useState();
  const [signedIn, setSignedIn] = useState(Boolean(session.token()));
  const [message, setMessage] = useState();
  useEffect(
    () =>
      session.subscribe((reason) => {
        setSignedIn(Boolean(session.token()));
        setMessage(reason);
      }),
    [],
  );
  useEffect(() => {
    appConfig()
      .then(async (c) => {
        setConfig(c);
        try {
          if (await completeSmartSignIn(c)) setSignedIn(true);
        } catch (e) {
          setMessage(e.message);
        }
      })
      .catch((e) => setMessage(e.message));
  }, []);
  if (!config)
    return html`<main id="main"><p class="loading" role="status">${message ?? 'Loading…'}</p></main>`;
  if (!signedIn) return html`<${SignIn} config=${config} message=${message} />`;
  return html`<${Shell} route=${route} />`;
}

const root = document.getElementById('root');
// The static "Loading…" placeholder goes: Preact renders into an empty container.
root.textContent = '';
render(html`<${App} />`, root);
