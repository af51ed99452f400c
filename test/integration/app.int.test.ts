/**
 * The care-team app in a real browser (headless Chromium driven by playwright-core) against a real Careway on
 * the real HAPI and Redis: demo sign-in, the board's counts and cards against the FHIR server's own, moving a
 * journey's stage, booking from the journey page, completing a worklist Task (status and Provenance on the FHIR
 * server), the analytics figures against the `$evaluate-measure` reports, replaying a real dead letter from the
 * integration console, and the SMART launch (authorization code + PKCE) with the parameters a SMART
 * authorization server checks. axe-core runs on each view: no serious or critical violation.
 *
 * Each run seeds its own journeys under a service code of its own, and the board is filtered to it, so other
 * people's data on the shared servers does not change what is counted.
 *
 * SCREENSHOTS_DIR=<dir> (`npm run screenshots`) also saves a PNG of each view there, for the README.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type {
  Appointment,
  EpisodeOfCare,
  MeasureReport,
  Parameters,
  Patient,
  Practitioner,
  Provenance,
  Schedule,
  Task,
} from 'fhir/r4.js';
import { makeKeys, startHarness, uniq, until, type Harness } from '../support/harness.js';
import { launchChromium, seriousViolations } from '../support/browser.js';
import { canonical } from '../../src/fhir/canonical.js';
import { JOURNEY_STAGES, type JourneyStage } from '../../src/journey/stages.js';
import { readState } from '../../src/journey/episode.js';
import { DEFAULT_APP_SCOPE } from '../../src/config/config.js';
import { projectRoot } from '../../src/shared/paths.js';

const run = uniq();
const SERVICE_SYSTEM = 'urn:careway:test:app-service';
const SERVICE_CODE = `cardiology-${run}`;
const SERVICE = `${SERVICE_SYSTEM}|${SERVICE_CODE}`;
const LOGIN = 'https://login.example.org';
const SHOTS = process.env['SCREENSHOTS_DIR'];

let h: Harness;
let base: string;
let staff: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let keyDir: string;
/** Seeded journeys: id → patient id and starting stage. */
const journeys: { id: string; patientId: string; stage: JourneyStage; name: string }[] = [];

async function call<T>(
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
): Promise<{ status: number; json: T }> {
  const res = await h.app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${staff}`,
      ...(body ? { 'content-type': 'application/fhir+json' } : {}),
    },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, json: res.json<T>() };
}

const params = (...parameter: NonNullable<Parameters['parameter']>): Parameters => ({
  resourceType: 'Parameters',
  parameter,
});

/** Seeds one patient and journey through Careway's API. */
async function seed(given: string, stage: JourneyStage): Promise<void> {
  const name = `${given} Appt${run.slice(-4)}`;
  const patient = await call<Patient>('POST', '/fhir/Patient', {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:test:app-mrn', value: `${given}-${run}` }],
    name: [{ given: [given], family: `Appt${run.slice(-4)}` }],
  });
  expect(patient.status, JSON.stringify(patient.json)).toBe(201);
  const started = await call<EpisodeOfCare>(
    'POST',
    '/fhir/EpisodeOfCare/$start-journey',
    params(
      { name: 'patient', valueReference: { reference: `Patient/${patient.json.id}` } },
      {
        name: 'identifier',
        valueIdentifier: { system: 'urn:careway:test:app-journey', value: `${given}-${run}` },
      },
      {
        name: 'type',
        valueCodeableConcept: {
          coding: [{ system: SERVICE_SYSTEM, code: SERVICE_CODE }],
          text: 'Cardiology',
        },
      },
      { name: 'stage', valueCode: stage },
    ),
  );
  expect(started.status, JSON.stringify(started.json)).toBe(201);
  journeys.push({ id: started.json.id!, patientId: patient.json.id!, stage, name });
}

/** A Monday at least a week ahead (UTC date). */
function nextMonday(): string {
  const d = new Date();
  d.setUTCHours(0, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() + 7 + ((8 - d.getUTCDay()) % 7));
  return d.toISOString().slice(0, 10);
}

/** The FHIR server's own count of the seeded journeys in each stage (straight to HAPI, not through Careway). */
async function hapiCounts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const stage of JOURNEY_STAGES) {
    const b = await h.fhir.search(
      'EpisodeOfCare',
      { type: SERVICE, stage, _summary: 'count' },
      { noCache: true },
    );
    out[stage] = b.total ?? -1;
  }
  return out;
}

async function boardCounts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const stage of JOURNEY_STAGES)
    out[stage] = Number(await page.getByTestId(`count-${stage}`).textContent());
  return out;
}

async function shot(name: string): Promise<void> {
  if (!SHOTS) return;
  const dir = join(projectRoot(), SHOTS);
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
}

async function expectAccessible(): Promise<void> {
  expect(await seriousViolations(page)).toEqual([]);
}

beforeAll(async () => {
  const keys = makeKeys();
  keyDir = mkdtempSync(join(tmpdir(), 'careway-app-'));
  const keyFile = join(keyDir, 'demo-key.pem');
  writeFileSync(keyFile, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  h = await startHarness(
    {
      // The console's replay needs careway.admin: this sign-in is the integration team's.
      APP_SCOPE: `${DEFAULT_APP_SCOPE} user/careway.admin`,
      // Off so that an HL7 message the maps refuse reaches the dead letters (the replay test makes one).
      HL7_INTAKE_CHECK: 'none',
      DEMO_SIGN_IN: 'true',
      DEMO_SIGNING_KEY_FILE: keyFile,
      APP_CLIENT_ID: 'careway-app-test',
      AUTH_AUTHORIZE_URL: `${LOGIN}/authorize`,
      AUTH_TOKEN_URL: `${LOGIN}/token`,
    },
    { keys },
  );
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const address = h.app.server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  staff = await h.token({ scope: 'user/*.cruds' });

  await seed('Ada', 'awareness');
  await seed('Bert', 'awareness');
  await seed('Cleo', 'access');
  await seed('Dana', 'access');
  await seed('Emil', 'care');

  // Bookable time for the service: a clinician, a Schedule and its Slots, through Careway.
  const clinician = await call<Practitioner>('POST', '/fhir/Practitioner', {
    resourceType: 'Practitioner',
    name: [{ given: ['Grace'], family: `Clinic${run.slice(-4)}` }],
  });
  expect(clinician.status, JSON.stringify(clinician.json)).toBe(201);
  const schedule = await call<Schedule>('POST', '/fhir/Schedule', {
    resourceType: 'Schedule',
    active: true,
    extension: [{ url: canonical.timezoneExtension, valueCode: 'Europe/Berlin' }],
    serviceType: [{ coding: [{ system: SERVICE_SYSTEM, code: SERVICE_CODE }] }],
    actor: [{ reference: `Practitioner/${clinician.json.id}` }],
  });
  expect(schedule.status, JSON.stringify(schedule.json)).toBe(201);
  const monday = nextMonday();
  const slots = await call<Parameters>(
    'POST',
    `/fhir/Schedule/${schedule.json.id}/$generate-slots`,
    params(
      { name: 'start', valueDate: monday },
      { name: 'end', valueDate: monday },
      { name: 'slot-minutes', valuePositiveInt: 30 },
      {
        name: 'availableTime',
        part: [
          { name: 'daysOfWeek', valueCode: 'mon' },
          { name: 'availableStartTime', valueTime: '09:00:00' },
          { name: 'availableEndTime', valueTime: '11:00:00' },
        ],
      },
    ),
  );
  expect(slots.status, JSON.stringify(slots.json)).toBe(201);

  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  context.setDefaultTimeout(15_000);
  page = await context.newPage();
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
});

afterAll(async () => {
  await browser?.close();
  await h?.close();
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
});

/** What the page showed and logged, printed when a test fails (a browser test's failure is otherwise mute). */
const consoleLines: string[] = [];
beforeEach(() => {
  consoleLines.length = 0;
  onTestFailed(async () => {
    const text = await page
      .locator('#root')
      .innerText()
      .catch(() => '(no page)');
    process.stderr.write(
      `--- page (${page.url()}) ---\n${text.slice(0, 3000)}\n--- console ---\n${consoleLines.join('\n')}\n`,
    );
  });
});

describe('the care-team app', () => {
  it('when the page is served then its CSP allows only our own scripts plus the import map, and the vendor files come from node_modules', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/app' });
    expect(res.statusCode).toBe(200);
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toMatch(/script-src 'self' 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
    expect(csp).not.toContain('unsafe-eval');
    expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
    const vendor = await h.app.inject({ method: 'GET', url: '/app/vendor/preact/dist/preact.mjs' });
    expect(vendor.statusCode).toBe(200);
    // Only the listed vendor files: the rest of node_modules is not served.
    const other = await h.app.inject({ method: 'GET', url: '/app/vendor/jose/package.json' });
    expect(other.statusCode).toBe(404);
  });

  it('when a coordinator uses the demo sign-in then the board shows, signed in as the demo Practitioner', async () => {
    await page.goto(`${base}/app`);
    await page.getByTestId('demo-sign-in').waitFor();
    await expectAccessible();
    await shot('sign-in');
    await page.getByTestId('demo-sign-in').click();
    await page.getByTestId('nav-board').waitFor();
    expect(await page.getByTestId('who').textContent()).toMatch(/^Practitioner\/[A-Za-z0-9\-.]+$/);
    // The token is in sessionStorage, never in the URL.
    expect(page.url()).not.toMatch(/token|code=/);
    const stored = await page.evaluate(() => sessionStorage.getItem('careway.session'));
    expect(stored).toContain('accessToken');
  });

  it("when the board is filtered to a service then each stage's count equals the FHIR server's count", async () => {
    await page.goto(`${base}/app#/board?service=${encodeURIComponent(SERVICE)}`);
    await page.getByTestId('column-access').waitFor();
    await until('the seeded cards', async () =>
      (await page.getByTestId(`card-${journeys[4]!.id}`).count()) > 0 ? true : undefined,
    );
    const expected = await hapiCounts();
    expect(expected).toMatchObject({ awareness: 2, access: 2, care: 1, consideration: 0 });
    expect(await boardCounts()).toEqual(expected);
    // Each card, as the FHIR server has it: in its stage's column, with the patient's name and the days since
    // the stage began (the board's rounding: tenths of a day, down).
    for (const j of journeys) {
      const eoc = await h.fhir.read<EpisodeOfCare>('EpisodeOfCare', j.id, { noCache: true });
      const patient = await h.fhir.read<Patient>('Patient', j.patientId, { noCache: true });
      const state = readState(eoc);
      const since = Date.parse(state.stageHistory.at(-1)?.start ?? eoc.period!.start!);
      const days = Math.floor(((Date.now() - since) / 86_400_000) * 10) / 10;
      const card = page.getByTestId(`column-${state.stage}`).getByTestId(`card-${j.id}`);
      expect(await card.getByTestId('card-link').textContent()).toBe(
        `${patient.name![0]!.given![0]} ${patient.name![0]!.family}`,
      );
      expect(await card.getByTestId('time-in-stage').textContent()).toMatch(
        new RegExp(`^\\s*${days} d in stage`),
      );
    }
    // The filter is in the URL: a bookmark reopens the same board.
    expect(page.url()).toContain(`service=${encodeURIComponent(SERVICE)}`);
    expect(await page.getByTestId('filter-service').inputValue()).toBe(SERVICE);
    await expectAccessible();
    await shot('board');
    await page.getByTestId('toggle-table').check();
    await page.getByTestId('board-table').waitFor();
    await expectAccessible();
    await page.getByTestId('toggle-table').uncheck();
  });

  it('when a card is opened and its journey moved on then the stage changes on the FHIR server and on the board', async () => {
    const ada = journeys[0]!;
    // By keyboard: a card is a link, reached by Tab and opened with Enter.
    await page.getByTestId(`card-${ada.id}`).getByTestId('card-link').focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('journey').waitFor();
    expect(await page.getByTestId('journey-stage').textContent()).toBe('Awareness');
    await expectAccessible();
    await page.getByTestId('advance-stage').selectOption('consideration');
    await page.getByTestId('advance-submit').click();
    await page.getByTestId('stage-ok').waitFor();
    await page.getByTestId('journey-stage').getByText('Consideration').waitFor();
    const episode = await h.fhir.read<EpisodeOfCare>('EpisodeOfCare', ada.id, { noCache: true });
    expect(episode.extension?.find((e) => e.url === canonical.journeyStageExtension)?.valueCoding?.code).toBe(
      'consideration',
    );
    // Moving back needs a reason: the form asks for it, and the server's rule is shown when it refuses.
    await page.getByTestId('advance-stage').selectOption('awareness');
    expect(await page.getByTestId('advance-reason').getAttribute('required')).not.toBeNull();

    await page.goto(`${base}/app#/board?service=${encodeURIComponent(SERVICE)}`);
    await until('the moved card', async () =>
      (await page.getByTestId('column-consideration').getByTestId(`card-${ada.id}`).count()) > 0
        ? true
        : undefined,
    );
    const expected = await hapiCounts();
    expect(expected).toMatchObject({ awareness: 1, consideration: 1 });
    expect(await boardCounts()).toEqual(expected);
  });

  it('when a slot is found and booked from the journey page then the Appointment is booked on the FHIR server', async () => {
    const cleo = journeys[2]!;
    await page.goto(`${base}/app#/journey/${cleo.id}`);
    await page.getByTestId('journey').waitFor();
    await page.getByTestId('find-slots').click();
    await page.getByTestId('slot-list').waitFor();
    await expectAccessible();
    await shot('journey');
    await page.getByTestId('book-0').click();
    await page.getByTestId('booking-ok').waitFor();
    const booked = await h.fhir.search<Appointment>(
      'Appointment',
      { actor: `Patient/${cleo.patientId}`, status: 'booked' },
      { noCache: true },
    );
    const appointments = (booked.entry ?? []).map((e) => e.resource!);
    expect(appointments).toHaveLength(1);
    expect(appointments[0]!.slot?.length).toBeGreaterThan(0);
    // The page reloads its timeline: the appointment is listed.
    await until('the appointment on the timeline', async () =>
      (await page.getByTestId('section-appointments').locator('li').count()) > 0 ? true : undefined,
    );
  });

  it('when the patient is messaged from the journey page then a Communication is written for them', async () => {
    const cleo = journeys[2]!;
    const text = `Please bring your letter ${run}`;
    await page.getByTestId('message-text').fill(text);
    await page.getByTestId('message-send').click();
    await page.getByTestId('message-ok').waitFor();
    const sent = await h.fhir.search(
      'Communication',
      { subject: `Patient/${cleo.patientId}` },
      { noCache: true },
    );
    expect(JSON.stringify(sent.entry ?? [])).toContain(text);
  });

  it('when a worklist task is completed then the FHIR server has it completed, with a Provenance naming the user', async () => {
    const dana = journeys[3]!;
    const me = (await page.getByTestId('who').textContent())!;
    // A no-show follow-up as scheduling writes one, owned by the signed-in user (the worklist's "mine").
    const created = await h.fhir.create<Task>({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      code: { coding: [{ system: canonical.taskCode, code: 'no-show-follow-up' }] },
      description: `Call ${dana.name} about the missed visit`,
      for: { reference: `Patient/${dana.patientId}` },
      owner: { reference: me },
      authoredOn: new Date().toISOString(),
      extension: [
        {
          url: canonical.journeyReferenceExtension,
          valueReference: { reference: `EpisodeOfCare/${dana.id}` },
        },
      ],
    });
    const id = created.resource.id!;
    await page.goto(`${base}/app#/worklist?owner=me`);
    const row = page.getByTestId(`task-${id}`);
    await row.waitFor();
    await expectAccessible();
    await shot('worklist');
    await page.getByTestId('complete-note').fill(`Called back ${run}`);
    await row.getByTestId('complete').click();
    await page.getByTestId('task-ok').waitFor();
    const done = await h.fhir.read<Task>('Task', id, { noCache: true });
    expect(done.status).toBe('completed');
    expect(JSON.stringify(done.note ?? [])).toContain(`Called back ${run}`);
    const prov = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `Task/${id}` },
      { noCache: true },
    );
    expect(prov).toHaveLength(1);
    expect(prov[0]?.agent[0]?.who?.reference).toBe(me);
    // The open worklist no longer lists it.
    await until('the completed task gone from the list', async () =>
      (await row.count()) === 0 ? true : undefined,
    );
  });

  it("when analytics opens then the no-show rate and time in stage shown are the $evaluate-measure reports' figures", async () => {
    // The view's default period (this month), as a coordinator opens it.
    await page.goto(`${base}/app#/analytics`);
    const start = await page.getByTestId('period-start').inputValue();
    const end = await page.getByTestId('period-end').inputValue();
    for (const id of ['careway-no-show-rate', 'careway-time-in-stage']) {
      const card = page.getByTestId(`measure-${id}`);
      await card.getByTestId(`score-${id}-0`).waitFor({ timeout: 60_000 });
      // The same report the page got (the cache keeps it MEASURE_CACHE_SECONDS, so a write by someone else
      // on the shared server in between does not make the two differ).
      const res = await h.app.inject({
        method: 'GET',
        url: `/fhir/Measure/${id}/$evaluate-measure?periodStart=${start}&periodEnd=${end}`,
        headers: { authorization: `Bearer ${staff}` },
      });
      expect(res.statusCode, res.body).toBe(200);
      const report = res.json<MeasureReport>();
      const num = (t: string | null): number => Number((t ?? '').replace(/[^0-9.-]/g, '') || NaN);
      for (const [i, g] of (report.group ?? []).entries()) {
        const shown = await card.getByTestId(`score-${id}-${i}`).textContent();
        if (g.measureScore?.value === undefined) expect(shown).toBe('—');
        else expect(num(shown)).toBeCloseTo(g.measureScore.value, 2);
      }
      // The table view: one row per stage stratum, each group's stratum score and the stratum's population.
      await card.getByTestId(`table-toggle-${id}`).check();
      await card.getByTestId(`table-${id}`).waitFor();
      const strata = (report.group?.[0]?.stratifier ?? []).find((s) => s.code?.[0]?.text === 'stage');
      // Ada's stay in Awareness ended today (the stage move above): time in stage has at least that stratum.
      if (id === 'careway-time-in-stage') expect(strata?.stratum?.length).toBeGreaterThan(0);
      expect(await card.locator('tbody tr').count()).toBe(strata?.stratum?.length ?? 0);
      for (const st of strata?.stratum ?? []) {
        const code = st.value?.coding?.[0]?.code ?? st.value?.text;
        const cells = await card.getByTestId(`stratum-${id}-${code}`).locator('td').allTextContents();
        (report.group ?? []).forEach((g, i) => {
          const score = g.stratifier
            ?.find((s) => s.code?.[0]?.text === 'stage')
            ?.stratum?.find((x) => (x.value?.coding?.[0]?.code ?? x.value?.text) === code)
            ?.measureScore?.value;
          if (score === undefined) expect(cells[i]).toBe('—');
          else expect(num(cells[i]!)).toBeCloseTo(score, 2);
        });
        const initial = st.population?.find((p) => p.code?.coding?.[0]?.code === 'initial-population')?.count;
        expect(num(cells.at(-1)!)).toBe(initial);
      }
    }
    await expectAccessible();
    await shot('analytics');
  });

  it('when a dead letter is replayed from the console then the console says it is queued and its job runs again', async () => {
    // A real dead letter: PID-8 holds a code outside table 0001, so the map refuses the message for good.
    const id = uniq();
    const feed = await h.token({ scope: 'system/MessageHeader.c', sub: 'app-feed' });
    const sent = await h.app.inject({
      method: 'POST',
      url: '/hl7',
      headers: { authorization: `Bearer ${feed}`, 'content-type': 'x-application/hl7-v2+er7' },
      payload: `MSH|^~\\&|APPTEST|A${id}|CAREWAY|CW|20240115083015-0500||ADT^A04|${id}|P|2.5\rPID|1||MRN-${id}^^^MAINHOSP^MR||Quarry^Ysolde||19700101|Q\r`,
    });
    expect(sent.statusCode, sent.body).toBeLessThan(300);
    const failed = await until('the message dead-lettered', async () =>
      (await h.app.hl7.queue.getJobs(['failed'])).find((j) => j.data.controlId === id),
    );
    await page.goto(`${base}/app#/integration?tab=dead-letters`);
    const letter = page.getByTestId(`dead-hl7-dead-${failed.id}-dead`);
    await until('the dead letter listed', async () => {
      if ((await letter.count()) > 0) return true;
      await page.getByTestId('tab-messages').click();
      await page.getByTestId('tab-dead-letters').click();
      return undefined;
    });
    await expectAccessible();
    await letter.getByTestId('replay').click();
    expect(await page.getByTestId('replay-ok').textContent()).toContain('Replay queued');
    // On the queue: the job ran once more (and failed again: the map still refuses it, so a new letter follows).
    await until('the replayed job to run again', async () => {
      const job = await h.app.hl7.queue.getJob(failed.id!);
      return job && job.attemptsMade > failed.attemptsMade && (await job.getState()) === 'failed'
        ? true
        : undefined;
    });
  });

  it('when the integration console opens then the message log, a message and outbound status show', async () => {
    await page.goto(`${base}/app#/integration`);
    await page.getByTestId('message-log').waitFor();
    await expectAccessible();
    await shot('integration');
    await page.getByTestId('message-log').locator('tbody a').first().click();
    await page.getByTestId('message-detail').locator('dl').waitFor();
    await expectAccessible();
    await page.getByTestId('tab-outbound').click();
    await page.getByTestId('outbound').waitFor();
    await expectAccessible();
  });
});

describe('scopes', () => {
  it("when the token may read journeys but not Patients then no patient's name appears anywhere, only references", async () => {
    const narrow = await browser.newContext();
    const p = await narrow.newPage();
    p.on('console', (m) => consoleLines.push(`narrow ${m.type()}: ${m.text()}`));
    const token = await h.token({ scope: 'user/EpisodeOfCare.rs', sub: 'narrow-user' });
    await p.goto(`${base}/app`);
    await p.evaluate(
      (t) =>
        sessionStorage.setItem(
          'careway.session',
          JSON.stringify({ accessToken: t, scope: 'user/EpisodeOfCare.rs' }),
        ),
      token,
    );
    // A new document (not a hash change), so the app reads the session afresh.
    await p.goto(`${base}/app/#/board?service=${encodeURIComponent(SERVICE)}`);
    const emil = journeys[4]!;
    const card = p.getByTestId(`card-${emil.id}`);
    await card.waitFor();
    expect(await card.textContent()).toContain(`Patient/${emil.patientId}`);
    for (const j of journeys) expect(await p.locator('#root').innerText()).not.toContain(j.name);
    await card.getByTestId('card-link').click();
    await p.getByTestId('journey').waitFor();
    expect(await p.locator('h1').textContent()).toBe(`Patient/${emil.patientId}`);
    expect(await p.locator('#root').innerText()).not.toContain(emil.name);
    await narrow.close();
  });
});

describe('SMART App Launch', () => {
  it('when a user signs in with the hospital account then the app redirects with PKCE (S256) and exchanges the code once, leaving no code or token in the URL', async () => {
    const smart = await browser.newContext();
    const p = await smart.newPage();
    let authorizeUrl: URL | undefined;
    let tokenForm: URLSearchParams | undefined;
    const token = await h.token({ scope: 'user/*.rs' });
    // The authorization server's two endpoints, as the browser reaches them: the authorize redirect sends the
    // browser back with a code; the token endpoint answers the exchange (with CORS, as a SMART server does).
    await p.route(`${LOGIN}/authorize**`, async (route) => {
      authorizeUrl = new URL(route.request().url());
      const back = new URL(authorizeUrl.searchParams.get('redirect_uri')!);
      back.searchParams.set('code', `code-${run}`);
      back.searchParams.set('state', authorizeUrl.searchParams.get('state')!);
      await route.fulfill({ status: 302, headers: { location: back.toString() } });
    });
    await p.route(`${LOGIN}/token`, async (route) => {
      const cors = { 'access-control-allow-origin': base, 'access-control-allow-headers': 'content-type' };
      if (route.request().method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
      tokenForm = new URLSearchParams(route.request().postData() ?? '');
      return route.fulfill({
        status: 200,
        headers: { ...cors, 'content-type': 'application/json' },
        body: JSON.stringify({
          access_token: token,
          token_type: 'Bearer',
          expires_in: 600,
          scope: 'user/*.rs',
        }),
      });
    });
    await p.goto(`${base}/app#/worklist`);
    await p.getByTestId('smart-sign-in').click();
    await p.getByTestId('nav-board').waitFor();

    const q = authorizeUrl!.searchParams;
    expect(authorizeUrl!.origin + authorizeUrl!.pathname).toBe(`${LOGIN}/authorize`);
    expect(q.get('response_type')).toBe('code');
    expect(q.get('client_id')).toBe('careway-app-test');
    expect(q.get('redirect_uri')).toBe(`${base}/app/`);
    expect(q.get('aud')).toBe(`${base}/fhir`);
    expect(q.get('scope')).toBe(h.config.app.scope);
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('state')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    // The exchange: the code once, the same redirect URI, and the verifier whose S256 hash was the challenge.
    expect(tokenForm?.get('grant_type')).toBe('authorization_code');
    expect(tokenForm?.get('code')).toBe(`code-${run}`);
    expect(tokenForm?.get('redirect_uri')).toBe(`${base}/app/`);
    const verifier = tokenForm?.get('code_verifier') ?? '';
    expect(verifier).toMatch(/^[A-Za-z0-9_-]{43,128}$/);
    expect(createHash('sha256').update(verifier).digest('base64url')).toBe(q.get('code_challenge'));
    // Back on the view it started from, with neither code nor token in the address bar.
    expect(p.url()).toBe(`${base}/app/#/worklist`);
    expect(await p.evaluate(() => sessionStorage.getItem('careway.pkce'))).toBeNull();
    await smart.close();
  });
});
