/**
 * Analytics: each journey KPI is a FHIR Measure, evaluated by Careway for a period
 * (`GET /fhir/Measure/{id}/$evaluate-measure?periodStart&periodEnd` → a summary MeasureReport). Each is drawn
 * as a chart with its table, stratified by stage or by service. The renderer reads the MeasureReport's
 * standard shape (groups, populations, measureScore, stratifiers) and nothing measure-specific, so the figures
 * on screen are the report's own.
 */
import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api } from '../api.js';
import { queryObject, setQuery } from '../route.js';
import { monthBounds, stageName } from '../format.js';
import { ChartView, Loading, Problem } from '../components.js';

export const MEASURES = [
  { id: 'careway-stage-funnel', title: 'Stage funnel', chart: 'bar', indexAxis: 'y' },
  { id: 'careway-time-in-stage', title: 'Time in stage (median and p90)', chart: 'bar' },
  { id: 'careway-no-show-rate', title: 'No-show rate', chart: 'bar' },
  {
    id: 'careway-referral-to-first-appointment',
    title: 'Wait from referral to first appointment',
    chart: 'bar',
  },
  { id: 'careway-referral-turnaround', title: 'Referral turnaround (received → triaged)', chart: 'bar' },
  { id: 'careway-reminder-delivery', title: 'Reminder delivery rate', chart: 'bar' },
  { id: 'careway-reminder-confirmation', title: 'Reminder confirmation rate', chart: 'bar' },
  { id: 'careway-patient-experience-nps', title: 'Patient experience (NPS)', chart: 'bar' },
];

const codeOf = (cc) => cc?.coding?.[0]?.code ?? cc?.text;
const labelOf = (cc) => cc?.text ?? cc?.coding?.[0]?.display ?? cc?.coding?.[0]?.code;

function groupLabel(g, i) {
  return labelOf(g.code) ?? g.id ?? (i === 0 ? 'score' : `group ${i + 1}`);
}

function count(populations, code) {
  return populations?.find((p) => codeOf(p.code) === code)?.count;
}

/**
 * A stratum's plotted value: its score only. A stratum without one (no denominator, no observation) has no
 * value; its counts are not a stand-in (a count of journeys drawn as days or as a rate would be wrong).
 */
function value(x) {
  return x?.measureScore?.value;
}

function format(q) {
  if (q?.value === undefined) return '—';
  const v = Number.isInteger(q.value) ? q.value : Math.round(q.value * 1000) / 1000;
  return `${v}${q.unit ? ` ${q.unit}` : q.code === '%' ? ' %' : ''}`;
}

function strataOf(report, by) {
  const labels = new Map();
  const rows = (report.group ?? []).map((g) => {
    const s = (g.stratifier ?? []).find((st) => (st.code ?? []).some((c) => codeOf(c) === by));
    const m = new Map();
    for (const st of s?.stratum ?? []) {
      const key = codeOf(st.value) ?? 'unknown';
      labels.set(key, by === 'stage' ? stageName(key) : (labelOf(st.value) ?? key));
      m.set(key, st);
    }
    return m;
  });
  return { keys: [...labels.keys()], labels, rows };
}

function MeasureCard({ m, period, by }) {
  const [report, setReport] = useState();
  const [error, setError] = useState();
  const [asTable, setAsTable] = useState(false);
  useEffect(() => {
    setReport(undefined);
    setError(undefined);
    api(`/fhir/Measure/${m.id}/$evaluate-measure?periodStart=${period.start}&periodEnd=${period.end}`).then(
      setReport,
      setError,
    );
  }, [m.id, period.start, period.end]);
  const groups = report?.group ?? [];
  const { keys, labels, rows } = report ? strataOf(report, by) : { keys: [], labels: new Map(), rows: [] };
  return html`<section class="panel measure" aria-labelledby=${`m-${m.id}`} data-testid=${`measure-${m.id}`}>
    <h2 id=${`m-${m.id}`}>${m.title}</h2>
    <${Problem} error=${error} what=${`The measure ${m.id}`} />
    ${!report && !error && html`<${Loading} what=${m.title} />`}
    ${
      report &&
      html`<p class="scores">
          ${groups.map(
            (g, i) =>
              html`<span class="score">
                ${groupLabel(g, i)}:${' '}<strong data-testid=${`score-${m.id}-${i}`}>${format(g.measureScore)}</strong>
                ${count(g.population, 'denominator') !== undefined && html` <small>(${count(g.population, 'numerator') ?? '—'} / ${count(g.population, 'denominator')})</small>`}
              </span>`,
          )}
        </p>
        <label class="check"
          ><input
            type="checkbox"
            checked=${asTable}
            onChange=${(e) => setAsTable(e.target.checked)}
            data-testid=${`table-toggle-${m.id}`}
          />
          Table</label
        >
        ${
          keys.length === 0
            ? html`<p>No ${by} breakdown in this report.</p>`
            : asTable
              ? html`<table data-testid=${`table-${m.id}`}>
                  <caption>
                    ${m.title} by ${by}
                  </caption>
                  <thead>
                    <tr>
                      <th scope="col">${by}</th>
                      ${groups.map((g, i) => html`<th scope="col">${groupLabel(g, i)}</th>`)}
                      <th scope="col">population</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${keys.map(
                      (k) =>
                        html`<tr data-testid=${`stratum-${m.id}-${k}`}>
                          <th scope="row">${labels.get(k)}</th>
                          ${rows.map((r) => html`<td>${format(r.get(k)?.measureScore)}</td>`)}
                          <td>${count(rows[0]?.get(k)?.population, 'initial-population') ?? ''}</td>
                        </tr>`,
                    )}
                  </tbody>
                </table>`
              : html`<${ChartView}
                  type=${m.chart}
                  testid=${`chart-${m.id}`}
                  label=${`${m.title} by ${by}: ${keys.map((k) => `${labels.get(k)} ${rows.map((r) => value(r.get(k)) ?? '—').join(' / ')}`).join('; ')}`}
                  labels=${keys.map((k) => labels.get(k))}
                  datasets=${groups.map((g, i) => ({ label: groupLabel(g, i), data: keys.map((k) => value(rows[i].get(k)) ?? null) }))}
                  options=${m.indexAxis ? { indexAxis: m.indexAxis } : {}}
                />`
        }`
    }
  </section>`;
}

export function Analytics({ query }) {
  const f = queryObject(query);
  const month = monthBounds();
  const period = { start: f.start ?? month.start, end: f.end ?? month.end };
  const by = f.by === 'service' ? 'service' : 'stage';
  const [draft, setDraft] = useState(period);
  const valid =
    /^\d{4}-\d{2}-\d{2}$/.test(draft.start) &&
    /^\d{4}-\d{2}-\d{2}$/.test(draft.end) &&
    draft.start <= draft.end;
  return html`<section aria-labelledby="analytics-title">
    <h1 id="analytics-title">Analytics</h1>
    <form
      class="filters"
      aria-label="Period and breakdown"
      data-testid="analytics-form"
      onSubmit=${(e) => {
        e.preventDefault();
        if (valid) setQuery('analytics', { ...f, start: draft.start, end: draft.end });
      }}
    >
      <label
        >From
        <input
          type="date"
          value=${draft.start}
          onInput=${(e) => setDraft({ ...draft, start: e.target.value })}
          data-testid="period-start"
      /></label>
      <label
        >To
        <input
          type="date"
          value=${draft.end}
          onInput=${(e) => setDraft({ ...draft, end: e.target.value })}
          data-testid="period-end"
      /></label>
      <button type="submit" disabled=${!valid} data-testid="period-apply">Show</button>
      <label
        >Break down by
        <select
          value=${by}
          onChange=${(e) => setQuery('analytics', { ...f, ...period, by: e.target.value })}
          data-testid="stratify-by"
        >
          <option value="stage">stage</option>
          <option value="service">service</option>
        </select>
      </label>
    </form>
    <div class="measures">
      ${MEASURES.map((m) => html`<${MeasureCard} key=${m.id} m=${m} period=${period} by=${by} />`)}
    </div>
  </section>`;
}
