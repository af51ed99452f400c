/**
 * The integration console: the HL7 message log (searchable by MRN, control id, type, sender and status), a
 * message's detail (the resources it wrote; the raw text only when the token has the scope for it), the dead
 * letters of every queue with replay, and the outbound messages to the EHR.
 * Data: `GET /hl7/messages`, `GET /hl7/messages/{id}`, `GET /engagement/dead-letters`,
 * `POST /engagement/dead-letters/{queue}/{jobId}/$replay`, `GET /hl7/outbound`.
 */
import { useCallback, useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api } from '../api.js';
import { queryObject, setQuery } from '../route.js';
import { when } from '../format.js';
import { Loading, Problem } from '../components.js';

const TABS = [
  { tab: 'messages', label: 'Message log' },
  { tab: 'dead-letters', label: 'Dead letters' },
  { tab: 'outbound', label: 'Outbound' },
];
const MESSAGE_FILTERS = ['mrn', 'controlId', 'type', 'sender', 'status'];

function useLoad(url) {
  const [state, setState] = useState({});
  const load = useCallback(() => {
    api(url).then(
      (data) => setState({ data }),
      (error) => setState({ error }),
    );
  }, [url]);
  useEffect(() => {
    setState({});
    load();
  }, [load]);
  return [state, load];
}

function MessageDetail({ id }) {
  const [{ data, error }] = useLoad(`/hl7/messages/${encodeURIComponent(id)}`);
  return html`<section class="panel" aria-labelledby="msg-detail" data-testid="message-detail">
    <h2 id="msg-detail">Message ${id}</h2>
    <${Problem} error=${error} what="The message detail" />
    ${
      data &&
      html`<dl>
          <dt>Type</dt>
          <dd>${data.type}</dd>
          <dt>Control id</dt>
          <dd>${data.controlId}</dd>
          <dt>Sender</dt>
          <dd>${data.sender}</dd>
          <dt>Status</dt>
          <dd>${data.status}</dd>
          <dt>Received</dt>
          <dd>${when(data.receivedAt)}</dd>
          <dt>ACK</dt>
          <dd>${data.ack ?? ''}</dd>
        </dl>
        <h3>Resources written</h3>
        <ul data-testid="message-resources">
          ${(data.resources ?? []).map((r) => html`<li><code>${r}</code></li>`)}
        </ul>
        ${
          data.raw !== undefined
            ? html`<h3>Raw message</h3>
                <pre class="raw" data-testid="message-raw">${data.raw.replace(/\r/g, '\n')}</pre>`
            : html`<p class="notice">The raw message is shown only to a sign-in with the scope for it.</p>`
        }`
    }
  </section>`;
}

function Messages({ f, id }) {
  const q = new URLSearchParams();
  for (const k of MESSAGE_FILTERS) if (f[k]) q.set(k, f[k]);
  const [{ data, error }] = useLoad(`/hl7/messages?${q}`);
  const set = (k) => (e) => setQuery('integration', { ...f, [k]: e.target.value });
  return html`<div>
    <form class="filters" aria-label="Message filters" onSubmit=${(e) => e.preventDefault()}>
      <label>MRN <input value=${f.mrn ?? ''} onChange=${set('mrn')} data-testid="filter-mrn" /></label>
      <label
        >Control id
        <input value=${f.controlId ?? ''} onChange=${set('controlId')} data-testid="filter-control-id"
      /></label>
      <label
        >Type
        <input value=${f.type ?? ''} onChange=${set('type')} placeholder="ADT^A04" data-testid="filter-type"
      /></label>
      <label
        >Sender <input value=${f.sender ?? ''} onChange=${set('sender')} data-testid="filter-sender"
      /></label>
      <label
        >Status
        <select value=${f.status ?? ''} onChange=${set('status')} data-testid="filter-msg-status">
          ${['', 'waiting', 'active', 'completed', 'failed', 'delayed'].map((s) => html`<option value=${s}>${s || 'any'}</option>`)}
        </select>
      </label>
    </form>
    ${id && html`<${MessageDetail} id=${id} />`}
    <${Problem} error=${error} what="The message log" />
    ${!data && !error && html`<${Loading} what="messages" />`}
    ${
      data &&
      html`<table data-testid="message-log">
        <caption>
          ${data.messages.length} message(s)
        </caption>
        <thead>
          <tr>
            <th scope="col">Received</th>
            <th scope="col">Type</th>
            <th scope="col">Sender</th>
            <th scope="col">Control id</th>
            <th scope="col">Status</th>
            <th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          ${data.messages.map(
            (m) =>
              html`<tr data-testid=${`message-${m.id}`}>
                <td>
                  <a
                    href=${`#/integration/${encodeURIComponent(m.id)}?${new URLSearchParams({ ...f, tab: 'messages' })}`}
                    >${when(m.receivedAt)}</a
                  >
                </td>
                <td>${m.type}</td>
                <td>${m.sender}</td>
                <td>${m.controlId}</td>
                <td>${m.status}</td>
                <td>${m.error ?? ''}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
  </div>`;
}

function DeadLetters() {
  const [{ data, error }, reload] = useLoad('/engagement/dead-letters');
  const [action, setAction] = useState({});
  const replay = async (d) => {
    setAction({ busy: `${d.queue}/${d.id}` });
    try {
      const r = await api(
        `/engagement/dead-letters/${encodeURIComponent(d.queue)}/${encodeURIComponent(d.id)}/$replay`,
        { method: 'POST', body: {} },
      );
      // 202 either way: "queued", or "already-replayed" when another replay (or the dashboard) was first.
      setAction({
        ok:
          r?.status === 'already-replayed'
            ? `Already replayed: ${r.queue} ${r.id}`
            : `Replay queued: ${r?.queue ?? d.queue} ${r?.id ?? d.id}`,
      });
      reload();
    } catch (e) {
      setAction({ error: e });
    }
  };
  return html`<div>
    ${action.ok && html`<p class="ok" role="status" data-testid="replay-ok">${action.ok}</p>`}
    <${Problem} error=${action.error} what="Replay" />
    <${Problem} error=${error} what="Dead letters" />
    ${!data && !error && html`<${Loading} what="dead letters" />`}
    ${
      data &&
      html`<table data-testid="dead-letters">
        <caption>
          ${data.deadLetters.length} dead letter(s)
        </caption>
        <thead>
          <tr>
            <th scope="col">Queue</th>
            <th scope="col">Job</th>
            <th scope="col">Failed at</th>
            <th scope="col">Reason</th>
            <th scope="col">Action</th>
          </tr>
        </thead>
        <tbody>
          ${data.deadLetters.map(
            (d) =>
              html`<tr data-testid=${`dead-${d.queue}-${d.id}`}>
                <td>${d.queue}</td>
                <td><code>${d.id}</code></td>
                <td>${when(d.at)}</td>
                <td>${String(d.data?.reason ?? d.data?.failedReason ?? '')}</td>
                <td>
                  <button
                    onClick=${() => replay(d)}
                    disabled=${action.busy === `${d.queue}/${d.id}`}
                    data-testid="replay"
                  >
                    Replay
                  </button>
                </td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
  </div>`;
}

function Outbound() {
  const [{ data, error }] = useLoad('/hl7/outbound');
  return html`<div>
    <${Problem} error=${error} what="Outbound messages" />
    ${!data && !error && html`<${Loading} what="outbound messages" />`}
    ${
      data &&
      html`<table data-testid="outbound">
        <caption>
          ${data.messages.length} outbound message(s)
        </caption>
        <thead>
          <tr>
            <th scope="col">Queued</th>
            <th scope="col">Change</th>
            <th scope="col">Trigger</th>
            <th scope="col">Control id</th>
            <th scope="col">Status</th>
            <th scope="col">Attempts</th>
            <th scope="col">ACK</th>
          </tr>
        </thead>
        <tbody>
          ${data.messages.map(
            (m) =>
              html`<tr>
                <td>${when(m.queuedAt)}</td>
                <td>${m.change}</td>
                <td>${m.trigger}</td>
                <td>${m.controlId}</td>
                <td>${m.status}</td>
                <td>${m.attempts}</td>
                <td>${m.ack ?? m.error ?? ''}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
  </div>`;
}

export function Integration({ query, id }) {
  const f = queryObject(query);
  const tab = TABS.some((t) => t.tab === f.tab) ? f.tab : 'messages';
  return html`<section aria-labelledby="integration-title">
    <h1 id="integration-title">Integration</h1>
    <nav aria-label="Integration sections">
      <ul class="tabs">
        ${TABS.map(
          (t) =>
            html`<li>
              <a
                href=${`#/integration?tab=${t.tab}`}
                aria-current=${tab === t.tab ? 'page' : undefined}
                data-testid=${`tab-${t.tab}`}
                >${t.label}</a
              >
            </li>`,
        )}
      </ul>
    </nav>
    ${tab === 'messages' && html`<${Messages} f=${f} id=${id} />`}
    ${tab === 'dead-letters' && html`<${DeadLetters} />`} ${tab === 'outbound' && html`<${Outbound} />`}
  </section>`;
}
