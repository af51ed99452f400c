/**
 * The worklist: the Task inbox (referral triage, no-show follow-ups, unanswered patient messages, overdue
 * care-plan activities, waitlist offers), filtered in the URL; a task can be claimed and completed.
 * Data: `GET /tasks/worklist` (src/http/routes/tasks.ts); actions `POST /fhir/Task/{id}/$claim` and
 * `$complete`, each conditional on the version the row showed (If-Match), so acting on a task someone changed
 * meanwhile is refused (412) and the list reloads instead of overwriting their change.
 */
import { useCallback, useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, parameters } from '../api.js';
import { session } from '../auth.js';
import { queryObject, setQuery } from '../route.js';
import { when } from '../format.js';
import { Loading, Problem } from '../components.js';

const KINDS = [
  '',
  'referral-triage',
  'no-show-follow-up',
  'answer-patient',
  'care-plan-activity',
  'waitlist-offer',
];
const FILTERS = ['kind', 'owner', 'status', 'overdue'];

export function Worklist({ query }) {
  const f = queryObject(query);
  const key = JSON.stringify(FILTERS.map((k) => f[k]));
  const [tasks, setTasks] = useState();
  const [error, setError] = useState();
  const [action, setAction] = useState({});
  const [note, setNote] = useState('');
  const load = useCallback(() => {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (f[k] && k !== 'owner') q.set(k, f[k]);
    // The route takes an owner reference: "me" is the sign-in's fhirUser (a sign-in without one filters nothing).
    const me = session.current()?.fhirUser;
    if (f.owner === 'me' && me) q.set('owner', me);
    api(`/tasks/worklist?${q}`).then(
      (r) => {
        setTasks(r.tasks);
        setError(undefined);
      },
      (e) => setError(e),
    );
  }, [key]);
  useEffect(() => {
    setTasks(undefined);
    load();
  }, [load]);
  const set = (k) => (e) =>
    setQuery('worklist', { ...f, [k]: e.target.type === 'checkbox' ? e.target.checked : e.target.value });
  const act = async (task, op) => {
    setAction({ busy: task.id });
    try {
      await api(`/fhir/Task/${task.id}/${op}`, {
        method: 'POST',
        body: parameters(['note', 'valueString', op === '$complete' ? note : undefined]),
        ifMatch: task.version,
      });
      if (op === '$complete') setNote('');
      setAction({ ok: `${op === '$claim' ? 'Claimed' : 'Completed'}: ${task.summary}` });
      load();
    } catch (e) {
      setAction({ error: e });
      // Changed by someone else (412): show the task as it is now.
      if (e.status === 412) load();
    }
  };
  return html`<section aria-labelledby="worklist-title">
    <h1 id="worklist-title">Worklist</h1>
    <form class="filters" aria-label="Worklist filters" onSubmit=${(e) => e.preventDefault()}>
      <label
        >Kind
        <select value=${f.kind ?? ''} onChange=${set('kind')} data-testid="filter-kind">
          ${KINDS.map((k) => html`<option value=${k}>${k || 'any'}</option>`)}
        </select>
      </label>
      <label
        >Owner
        <select value=${f.owner ?? ''} onChange=${set('owner')} data-testid="filter-owner">
          <option value="">anyone</option>
          <option value="me">me</option>
        </select>
      </label>
      <label
        >Status
        <select value=${f.status ?? ''} onChange=${set('status')} data-testid="filter-task-status">
          ${['', 'requested', 'received', 'accepted', 'in-progress', 'on-hold', 'completed'].map((s) => html`<option value=${s}>${s || 'open'}</option>`)}
        </select>
      </label>
      <label class="check"
        ><input
          type="checkbox"
          checked=${Boolean(f.overdue)}
          onChange=${set('overdue')}
          data-testid="filter-task-overdue"
        />
        Overdue only</label
      >
    </form>
    <label class="note"
      >Note recorded when you complete a task (optional)
      <input value=${note} onInput=${(e) => setNote(e.target.value)} data-testid="complete-note" />
    </label>
    <${Problem} error=${action.error} what="The task" />
    ${action.ok && html`<p class="ok" role="status" data-testid="task-ok">${action.ok}</p>`}
    <${Problem} error=${error} what="The worklist" />
    ${!tasks && !error && html`<${Loading} what="the worklist" />`}
    ${
      tasks &&
      html`<table data-testid="worklist">
        <caption>
          ${tasks.length} task(s)
        </caption>
        <thead>
          <tr>
            <th scope="col">Task</th>
            <th scope="col">Kind</th>
            <th scope="col">Patient</th>
            <th scope="col">Status</th>
            <th scope="col">Due</th>
            <th scope="col">Owner</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          ${tasks.map(
            (t) =>
              html`<tr data-testid=${`task-${t.id}`} class=${t.overdue ? 'overdue' : ''}>
                <td>
                  ${t.summary}${t.priority && t.priority !== 'routine' ? html` <span class="badge">${t.priority}</span>` : ''}
                </td>
                <td>${t.kind}</td>
                <td>
                  ${t.episodeId ? html`<a href=${`#/journey/${t.episodeId}`}>${t.patientName ?? t.patientId ?? 'journey'}</a>` : (t.patientName ?? t.patientId ?? '')}
                </td>
                <td>${t.status}</td>
                <td>
                  ${t.due ? when(t.due) : ''}${t.overdue ? html` <span class="over">overdue</span>` : ''}
                </td>
                <td>${t.owner?.display ?? t.owner?.reference ?? ''}</td>
                <td class="actions">
                  <button
                    onClick=${() => act(t, '$claim')}
                    disabled=${action.busy === t.id}
                    data-testid="claim"
                  >
                    Claim
                  </button>
                  <button
                    onClick=${() => act(t, '$complete')}
                    disabled=${action.busy === t.id}
                    data-testid="complete"
                  >
                    Complete
                  </button>
                </td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
  </section>`;
}
