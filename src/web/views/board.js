/**
 * The journey board: one column per stage with its count, a card per journey (time in stage against the
 * stage's target, next appointment, open and overdue tasks, the last reminder per channel, allergy flag, pain
 * points), filters kept in the URL, a table toggle, and a refresh every 60 seconds.
 *
 * Data: `GET /journeys/board` (src/journey/board.ts): the filters go as they are in the URL (service as a code
 * or system|code on EpisodeOfCare.type, team, careManager, mine, overdue, status); what the token may not read
 * is left out of the cards by the server.
 */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api } from '../api.js';
import { setQuery, queryObject } from '../route.js';
import { stageName, targetLevel, when } from '../format.js';
import { Loading, Problem } from '../components.js';

const REFRESH_MS = 60_000;
const FILTERS = ['service', 'team', 'careManager', 'mine', 'overdue', 'status'];

async function loadBoard(f) {
  const q = new URLSearchParams();
  for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
  return api(`/journeys/board?${q}`);
}

function Filters({ f }) {
  const set = (k) => (e) =>
    setQuery('board', { ...f, [k]: e.target.type === 'checkbox' ? e.target.checked : e.target.value });
  return html`<form
    class="filters"
    aria-label="Board filters"
    onSubmit=${(e) => e.preventDefault()}
    data-testid="board-filters"
  >
    <label
      >Service
      <input
        name="service"
        value=${f.service ?? ''}
        onChange=${set('service')}
        placeholder="system|code"
        data-testid="filter-service"
    /></label>
    <label
      >Team
      <input
        name="team"
        value=${f.team ?? ''}
        onChange=${set('team')}
        placeholder="CareTeam/…"
        data-testid="filter-team"
    /></label>
    <label
      >Care manager
      <input
        name="careManager"
        value=${f.careManager ?? ''}
        onChange=${set('careManager')}
        placeholder="Practitioner/…"
        data-testid="filter-care-manager"
    /></label>
    <label
      >Status
      <select name="status" value=${f.status ?? ''} onChange=${set('status')} data-testid="filter-status">
        ${['', 'planned', 'waitlist', 'active', 'onhold', 'finished', 'cancelled'].map((s) => html`<option value=${s}>${s || 'any'}</option>`)}
      </select>
    </label>
    <label class="check"
      ><input type="checkbox" checked=${Boolean(f.mine)} onChange=${set('mine')} data-testid="filter-mine" />
      Mine</label
    >
    <label class="check"
      ><input
        type="checkbox"
        checked=${Boolean(f.overdue)}
        onChange=${set('overdue')}
        data-testid="filter-overdue"
      />
      Overdue only</label
    >
    <label class="check"
      ><input
        type="checkbox"
        checked=${f.view === 'table'}
        onChange=${(e) => setQuery('board', { ...f, view: e.target.checked ? 'table' : '' })}
        data-testid="toggle-table"
      />
      Table</label
    >
  </form>`;
}

function TimeInStage({ c }) {
  if (c.daysInStage === undefined) return null;
  const level = targetLevel(c.daysInStage, c.targetDays, c.overTarget);
  const label = { ok: 'within target', near: 'near target', over: 'over target' }[level];
  return html`<span class=${`time lvl-${level}`} data-testid="time-in-stage" data-level=${level}>
    ${c.daysInStage} d in stage${c.targetDays ? ` / ${c.targetDays} d` : ''}<span class="sr">
      (${label})</span
    >
    ${level === 'over' ? ' ⚑' : ''}
  </span>`;
}

function Reminders({ last }) {
  const channels = Object.entries(last ?? {});
  if (!channels.length) return null;
  return html`<ul class="reminders" aria-label="Last reminder per channel">
    ${channels.map(([ch, r]) => html`<li class=${`outcome ${r.outcome}`}>${ch}: ${r.outcome}</li>`)}
  </ul>`;
}

function Card({ c }) {
  return html`<li class="card" data-testid=${`card-${c.episodeId}`}>
    <a href=${`#/journey/${c.episodeId}`} data-testid="card-link">
      <strong>${c.patientName ?? (c.patientId ? `Patient/${c.patientId}` : 'Patient')}</strong>
    </a>
    ${c.allergy && html`<span class="badge allergy" data-testid="allergy-flag">Allergy</span>`}
    <div><${TimeInStage} c=${c} /></div>
    ${c.nextAppointment && html`<div class="next">Next: ${when(c.nextAppointment.start)} (${c.nextAppointment.status})</div>`}
    ${
      (c.openTasks !== undefined || c.overdueTasks) &&
      html`<div class="tasks">
        ${c.openTasks ?? 0} open
        task(s)${c.overdueTasks ? html`, <span class="over">${c.overdueTasks} overdue</span>` : ''}
      </div>`
    }
    <${Reminders} last=${c.lastReminder} />
    ${
      (c.painPoints ?? []).length > 0 &&
      html`<ul class="badges" aria-label="Pain points">
        ${c.painPoints.map((p) => html`<li class="badge pain" title=${p.summary}>${p.code}</li>`)}
      </ul>`
    }
  </li>`;
}

function Table({ board }) {
  return html`<table data-testid="board-table">
    <caption>
      Journeys on the board
    </caption>
    <thead>
      <tr>
        <th scope="col">Patient</th>
        <th scope="col">Stage</th>
        <th scope="col">Days in stage</th>
        <th scope="col">Target</th>
        <th scope="col">Status</th>
        <th scope="col">Next appointment</th>
        <th scope="col">Open / overdue tasks</th>
        <th scope="col">Pain points</th>
      </tr>
    </thead>
    <tbody>
      ${board.cards.map(
        (c) =>
          html`<tr data-testid=${`row-${c.episodeId}`}>
            <td>
              <a href=${`#/journey/${c.episodeId}`}>${c.patientName ?? `Patient/${c.patientId ?? '?'}`}</a>
            </td>
            <td>${stageName(c.stage)}</td>
            <td><${TimeInStage} c=${c} /></td>
            <td>${c.targetDays ?? ''}</td>
            <td>${c.status}</td>
            <td>${c.nextAppointment ? when(c.nextAppointment.start) : ''}</td>
            <td>${c.openTasks ?? ''} / ${c.overdueTasks ?? ''}</td>
            <td>${(c.painPoints ?? []).map((p) => p.code).join(', ')}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

export function Board({ query }) {
  const f = queryObject(query);
  const key = JSON.stringify(FILTERS.map((k) => f[k]));
  const [board, setBoard] = useState();
  const [error, setError] = useState();
  // Only the latest request may paint: a slow answer for the previous filters must not overwrite this one.
  const latest = useRef(0);
  const refresh = useCallback(() => {
    const mine = ++latest.current;
    loadBoard(f).then(
      (b) => {
        if (mine !== latest.current) return;
        setBoard(b);
        setError(undefined);
      },
      (e) => {
        if (mine === latest.current) setError(e);
      },
    );
  }, [key]);
  useEffect(() => {
    setBoard(undefined);
    refresh();
    const t = setInterval(refresh, REFRESH_MS);
    return () => clearInterval(t);
  }, [refresh]);
  return html`<section aria-labelledby="board-title">
    <h1 id="board-title">Journey board</h1>
    <${Filters} f=${f} />
    <p class="meta">
      ${board && html`<span data-testid="generated-at">Updated ${when(board.generatedAt)}</span> · refreshes every minute · `}
      <button class="link" onClick=${refresh} data-testid="refresh">Refresh now</button>
    </p>
    <${Problem} error=${error} what="The journey board" />
    ${!board && !error && html`<${Loading} what="the board" />`}
    ${
      board &&
      (f.view === 'table'
        ? html`<${Table} board=${board} />`
        : html`<div class="board" data-testid="board">
            ${board.stages.map(
              (s) =>
                html`<section
                  class="column"
                  aria-labelledby=${`col-${s.code}`}
                  data-testid=${`column-${s.code}`}
                >
                  <h2 id=${`col-${s.code}`}>
                    ${s.display ?? stageName(s.code)}
                    <span class="count" data-testid=${`count-${s.code}`}>${s.count}</span>
                  </h2>
                  ${s.targetDays && html`<p class="target">target ${s.targetDays} d</p>`}
                  <ul class="cards">
                    ${board.cards.filter((c) => c.stage === s.code).map((c) => html`<${Card} c=${c} />`)}
                  </ul>
                </section>`,
            )}
          </div>`)
    }
  </section>`;
}
