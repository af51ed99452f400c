/**
 * One journey: its stages with their periods, and the timeline (appointments, tasks, communications and
 * reminders, results, survey answers) with computed pain points and allergy alerts. Actions: move the stage
 * (a reason is required to move back), close, find and book (or reschedule) an appointment, message the patient.
 *
 * Data: `GET /fhir/EpisodeOfCare/{id}`, `GET /journeys/{id}/timeline`, the patient (when the token reads
 * Patients). Actions: `$advance-stage`, `$close-journey`, `Appointment/$find` + `$book`, `POST /fhir/Communication`.
 */
import { useCallback, useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, entries, parameters } from '../api.js';
import { session } from '../auth.js';
import { STAGES, personName, stageName, when } from '../format.js';
import { Loading, Problem } from '../components.js';

const HISTORY_URL = 'https://careway.dev/fhir/StructureDefinition/journey-stage-history';
const STAGE_URL = 'https://careway.dev/fhir/StructureDefinition/journey-stage';

const SECTIONS = [
  { title: 'Appointments', kinds: ['appointment', 'encounter'], testid: 'appointments' },
  { title: 'Referral and tasks', kinds: ['referral', 'task', 'care-plan'], testid: 'tasks' },
  {
    title: 'Communications and reminders',
    kinds: ['communication', 'communication-request'],
    testid: 'communications',
  },
  { title: 'Results', kinds: ['diagnostic-report', 'observation', 'condition'], testid: 'results' },
  { title: 'Survey answers', kinds: ['questionnaire-response'], testid: 'surveys' },
];

function stagePeriods(episode) {
  return (episode?.extension ?? [])
    .filter((x) => x.url === HISTORY_URL)
    .map((x) => ({
      stage: x.extension?.find((y) => y.url === 'stage')?.valueCoding?.code,
      period: x.extension?.find((y) => y.url === 'period')?.valuePeriod ?? {},
      reason: x.extension?.find((y) => y.url === 'reason')?.valueString,
    }));
}

/** Runs an action, keeping its busy state and its error or success message. */
function useAction(onDone) {
  const [state, setState] = useState({ busy: false });
  const run = async (fn, ok) => {
    setState({ busy: true });
    try {
      await fn();
      setState({ busy: false, ok });
      onDone();
    } catch (e) {
      setState({ busy: false, error: e });
    }
  };
  return [state, run];
}

function Outcome({ state, testid }) {
  if (state.error)
    return html`<p class="error" role="alert" data-testid=${`${testid}-error`}>${state.error.message}</p>`;
  if (state.ok) return html`<p class="ok" role="status" data-testid=${`${testid}-ok`}>${state.ok}</p>`;
  return null;
}

function StageActions({ id, stage, status, reload }) {
  const [target, setTarget] = useState('');
  const [reason, setReason] = useState('');
  const [closeAs, setCloseAs] = useState('finished');
  const [closeReason, setCloseReason] = useState('');
  const [state, run] = useAction(reload);
  const back =
    Boolean(target) && STAGES.findIndex((s) => s.code === target) < STAGES.findIndex((s) => s.code === stage);
  const closed = status === 'finished' || status === 'cancelled';
  return html`<section class="panel" aria-labelledby="stage-actions">
    <h2 id="stage-actions">Stage</h2>
    <form
      data-testid="advance-form"
      onSubmit=${(e) => {
        e.preventDefault();
        run(
          () =>
            api(`/fhir/EpisodeOfCare/${id}/$advance-stage`, {
              method: 'POST',
              body: parameters(['stage', 'valueCode', target], ['reason', 'valueString', reason]),
            }),
          `Moved to ${stageName(target)}`,
        );
      }}
    >
      <label
        >Move to
        <select
          value=${target}
          onChange=${(e) => setTarget(e.target.value)}
          data-testid="advance-stage"
          required
          disabled=${closed}
        >
          <option value="">choose a stage</option>
          ${STAGES.filter((s) => s.code !== stage).map((s) => html`<option value=${s.code}>${s.display}</option>`)}
        </select>
      </label>
      <label
        >Reason${back ? ' (required to move back)' : ''}
        <input
          value=${reason}
          onInput=${(e) => setReason(e.target.value)}
          required=${back}
          data-testid="advance-reason"
        />
      </label>
      <button type="submit" disabled=${state.busy || !target || closed} data-testid="advance-submit">
        ${back ? 'Move back' : 'Advance'}
      </button>
    </form>
    <form
      data-testid="close-form"
      onSubmit=${(e) => {
        e.preventDefault();
        run(
          () =>
            api(`/fhir/EpisodeOfCare/${id}/$close-journey`, {
              method: 'POST',
              body: parameters(['status', 'valueCode', closeAs], ['reason', 'valueString', closeReason]),
            }),
          `Journey ${closeAs}`,
        );
      }}
    >
      <label
        >Close as
        <select
          value=${closeAs}
          onChange=${(e) => setCloseAs(e.target.value)}
          data-testid="close-status"
          disabled=${closed}
        >
          <option value="finished">finished</option>
          <option value="cancelled">cancelled</option>
        </select>
      </label>
      <label
        >Reason${closeAs === 'cancelled' ? ' (required)' : ''}
        <input
          value=${closeReason}
          onInput=${(e) => setCloseReason(e.target.value)}
          required=${closeAs === 'cancelled'}
          data-testid="close-reason"
        />
      </label>
      <button type="submit" disabled=${state.busy || closed} data-testid="close-submit">Close journey</button>
    </form>
    <${Outcome} state=${state} testid="stage" />
  </section>`;
}

function Booking({ id, episode, booked, reload }) {
  const [found, setFound] = useState();
  const [replaces, setReplaces] = useState('');
  const [state, run] = useAction(reload);
  const [findState, setFindState] = useState({});
  const service = episode?.type?.[0];
  const patient = episode?.patient;
  const find = async () => {
    setFindState({ busy: true });
    try {
      const bundle = await api('/fhir/Appointment/$find', {
        method: 'POST',
        body: {
          resourceType: 'Parameters',
          parameter: [
            ...(service ? [{ name: 'service-type', valueCodeableConcept: service }] : []),
            { name: 'patient', valueReference: patient },
            { name: 'journey', valueReference: { reference: `EpisodeOfCare/${id}` } },
            { name: '_count', valuePositiveInt: 5 },
          ],
        },
      });
      setFound(entries(bundle, 'Appointment'));
      setFindState({});
    } catch (e) {
      setFindState({ error: e });
    }
  };
  const book = (proposed) =>
    run(
      () =>
        api('/fhir/Appointment/$book', {
          method: 'POST',
          body: {
            resourceType: 'Parameters',
            parameter: [
              { name: 'appointment', resource: proposed },
              { name: 'patient', valueReference: patient },
              { name: 'journey', valueReference: { reference: `EpisodeOfCare/${id}` } },
              ...(replaces ? [{ name: 'replaces', valueReference: { reference: replaces } }] : []),
            ],
          },
        }).then(() => setFound(undefined)),
      `Booked for ${when(proposed.start)}`,
    );
  return html`<section class="panel" aria-labelledby="booking">
    <h2 id="booking">Book or reschedule</h2>
    ${!service && html`<p class="notice">This journey names no service (EpisodeOfCare.type); slots are searched without one.</p>`}
    ${
      booked.length > 0 &&
      html`<label
        >Reschedule
        <select
          value=${replaces}
          onChange=${(e) => setReplaces(e.target.value)}
          data-testid="reschedule-select"
        >
          <option value="">no: a new appointment</option>
          ${booked.map((t) => html`<option value=${t.resource}>${when(t.time)} — ${t.summary}</option>`)}
        </select>
      </label>`
    }
    <button onClick=${find} disabled=${findState.busy} data-testid="find-slots">Find slots</button>
    <${Problem} error=${findState.error} what="Finding slots" />
    ${
      found &&
      (found.length === 0
        ? html`<p data-testid="no-slots">No free slots found.</p>`
        : html`<ul class="slots" data-testid="slot-list">
            ${found.map(
              (a, i) =>
                html`<li>
                  <span>${when(a.start)}${a.comment ? ` — ${a.comment}` : ''}</span>
                  <button onClick=${() => book(a)} disabled=${state.busy} data-testid=${`book-${i}`}>
                    Book
                  </button>
                </li>`,
            )}
          </ul>`)
    }
    <${Outcome} state=${state} testid="booking" />
  </section>`;
}

function Message({ episode, reload }) {
  const [text, setText] = useState('');
  const [state, run] = useAction(reload);
  const me = session.current()?.fhirUser;
  const send = (e) => {
    e.preventDefault();
    run(
      () =>
        api('/fhir/Communication', {
          method: 'POST',
          body: {
            resourceType: 'Communication',
            status: 'completed',
            identifier: [{ system: 'urn:careway:app:message', value: crypto.randomUUID() }],
            subject: episode.patient,
            recipient: [episode.patient],
            ...(me ? { sender: { reference: me } } : {}),
            sent: new Date().toISOString(),
            payload: [{ contentString: text }],
          },
        }).then(() => setText('')),
      'Message sent',
    );
  };
  return html`<section class="panel" aria-labelledby="message">
    <h2 id="message">Message the patient</h2>
    <form onSubmit=${send} data-testid="message-form">
      <label
        >Message
        <textarea
          value=${text}
          onInput=${(e) => setText(e.target.value)}
          required
          rows="3"
          data-testid="message-text"
        ></textarea>
      </label>
      <button type="submit" disabled=${state.busy || !text.trim()} data-testid="message-send">Send</button>
    </form>
    <${Outcome} state=${state} testid="message" />
  </section>`;
}

export function Journey({ id }) {
  const [data, setData] = useState();
  const [error, setError] = useState();
  const load = useCallback(async () => {
    try {
      const [episode, timeline] = await Promise.all([
        api(`/fhir/EpisodeOfCare/${id}`),
        api(`/journeys/${id}/timeline`),
      ]);
      let patient;
      try {
        patient = await api(`/fhir/${episode.patient.reference}`);
      } catch {
        patient = undefined; // no scope for Patients: the page shows the reference only
      }
      setData({ episode, timeline, patient });
      setError(undefined);
    } catch (e) {
      setError(e);
    }
  }, [id]);
  useEffect(() => {
    setData(undefined);
    load();
  }, [load]);
  if (error) return html`<${Problem} error=${error} what="This journey" />`;
  if (!data) return html`<${Loading} what="the journey" />`;
  const { episode, timeline, patient } = data;
  const stage = episode.extension?.find((x) => x.url === STAGE_URL)?.valueCoding?.code ?? timeline.stage;
  const booked = timeline.touchpoints.filter((t) => t.kind === 'appointment' && t.status === 'booked');
  return html`<article aria-labelledby="journey-title" data-testid="journey">
    <p><a href="#/board">← Board</a></p>
    <h1 id="journey-title">${personName(patient) ?? episode.patient?.reference}</h1>
    <p class="meta">
      Stage <strong data-testid="journey-stage">${stageName(stage)}</strong> · status${' '}<strong data-testid="journey-status">${episode.status}</strong>
      ${episode.type?.[0] && html` · service ${episode.type[0].text ?? episode.type[0].coding?.[0]?.display ?? episode.type[0].coding?.[0]?.code}`}
    </p>
    ${
      timeline.alerts.length > 0 &&
      html`<ul class="alerts" aria-label="Alerts" data-testid="alerts">
        ${timeline.alerts.map((a) => html`<li class="badge allergy">${a.summary}${a.criticality ? ` (${a.criticality})` : ''}</li>`)}
      </ul>`
    }
    <div class="journey-grid">
      <div>
        <section class="panel" aria-labelledby="stages-h">
          <h2 id="stages-h">Stages</h2>
          <ol class="stages" data-testid="stage-periods">
            ${stagePeriods(episode).map(
              (p) =>
                html`<li>
                  <strong>${stageName(p.stage)}</strong> ${when(p.period.start)} –
                  ${p.period.end ? when(p.period.end) : 'now'}
                  ${p.reason && html`<span class="reason"> (${p.reason})</span>`}
                </li>`,
            )}
          </ol>
        </section>
        <section class="panel" aria-labelledby="pain-h">
          <h2 id="pain-h">Pain points</h2>
          ${
            timeline.painPoints.length === 0
              ? html`<p>None.</p>`
              : html`<ul data-testid="pain-points">
                  ${timeline.painPoints.map((p) => html`<li class=${`sev ${p.severity}`}><strong>${p.severity}</strong> ${p.summary}</li>`)}
                </ul>`
          }
        </section>
        ${SECTIONS.map((s) => {
          const items = timeline.touchpoints.filter((t) => s.kinds.includes(t.kind));
          return html`<section
            class="panel"
            aria-labelledby=${`h-${s.testid}`}
            data-testid=${`section-${s.testid}`}
          >
            <h2 id=${`h-${s.testid}`}>${s.title}</h2>
            ${
              items.length === 0
                ? html`<p>None.</p>`
                : html`<ul class="timeline">
                    ${items.map((t) => html`<li><time datetime=${t.time}>${when(t.time)}</time> ${t.summary}${t.status ? ` (${t.status})` : ''}</li>`)}
                  </ul>`
            }
          </section>`;
        })}
      </div>
      <div>
        <${StageActions} id=${id} stage=${stage} status=${episode.status} reload=${load} />
        <${Booking} id=${id} episode=${episode} booked=${booked} reload=${load} />
        <${Message} episode=${episode} reload=${load} />
      </div>
    </div>
  </article>`;
}
