// The web UI in a real browser against a live `zenith up`: each page loads, shows what the
// API holds, reacts to clicks and to live events. Screenshots go to test-output/ui/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startZenith, startBrowser, waitFor, shot, OUT } from './harness.mjs';

let z;
let browser;
let page;
const pageErrors = [];

function steps(n, width) {
  const lines = ['name: wide', 'steps:'];
  for (let i = 0; i < n; i += 1) {
    const l = Math.floor(i / width);
    const k = i % width;
    lines.push(`  - name: s${l}_${k}`, '    run: ["true"]', '    resources: {cpus: 0.1}');
    if (l > 0) lines.push(`    depends: [s${l - 1}_${k}, s${l - 1}_${(k + 1) % width}]`);
  }
  return lines.join('\n');
}

const ETL = `
name: etl
steps:
  - name: extract
    run: ["sh", "-c", "echo extracted"]
    resources: {cpus: 0.1}
  - name: transform
    depends: [extract]
    forEach: [a, b, c]
    run: ["echo", "{{ item }}"]
    resources: {cpus: 0.1}
  - name: check
    depends: [extract]
    run: ["sh", "-c", "exit 4"]
    continueOnFailure: true
    resources: {cpus: 0.1}
  - name: publish
    type: approval
    depends: [transform, check]
  - name: announce
    depends: [publish]
    run: ["echo", "done"]
    resources: {cpus: 0.1}
`;

before(async () => {
  z = await startZenith();
  browser = await startBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => d.accept());
});

after(async () => {
  if (browser) await browser.close();
  if (z) await z.stop();
});

test('assets are served with a strict content security policy', async () => {
  const r = await fetch(`${z.url}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-security-policy'), /script-src 'self'/);
  assert.match(await r.text(), /\/ui\/app\.js/);
  const js = await fetch(`${z.url}/ui/dag.js`);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  const again = await fetch(`${z.url}/ui/dag.js`, { headers: { 'If-None-Match': js.headers.get('etag') } });
  assert.equal(again.status, 304);
  assert.equal((await fetch(`${z.url}/ui/nope.js`)).status, 404);
});

test('sign in refuses a wrong token and accepts the admin token', async () => {
  await page.goto(`${z.url}/`);
  await page.waitForSelector('#login-form');
  await shot(page, '01-login');
  await page.fill('#token', 'not-the-token');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('.login-status .error');
  assert.match(await page.textContent('.login-status'), /refused/);
  await page.fill('#token', z.token);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('[data-ready=overview]');
});

test('the link zenith ui prints signs in, and the token leaves the address bar', async () => {
  assert.match(z.link, /#token=[0-9a-f]+$/);
  // Not at a terminal (a service's log), zenith up names the token file instead of the token.
  assert.ok(!z.log().includes(z.token), z.log());
  assert.match(z.log(), /web UI: \S+ \(sign in with the admin token in \S+admin\.token/);
  const fresh = await browser.newPage();
  await fresh.goto(z.link);
  await fresh.waitForSelector('[data-ready=overview]');
  assert.ok(!fresh.url().includes('token'), fresh.url());
  await fresh.close();
});

test('overview shows nodes, capacity, queues and recent work, and updates live', async () => {
  await z.api('POST', '/jobs', { command: ['echo', 'hello ui'], name: 'hello', resources: { cpus: 0.1 } });
  await page.goto(`${z.url}/#/`);
  await page.waitForSelector('[data-ready=overview]');
  const cards = await page.textContent('#cards');
  assert.match(cards, /Nodes ready\s*1/);
  assert.match(cards, /CPU in use/);
  await waitFor(async () => /hello/.test(await page.textContent('#recent-jobs')), 'the job in the recent list');
  // A job submitted while the page is open appears without a reload (event stream).
  await z.api('POST', '/jobs', { command: ['true'], name: 'arrived-live', resources: { cpus: 0.1 } });
  await waitFor(async () => /arrived-live/.test(await page.textContent('#recent-jobs')), 'a live update of the overview');
  assert.equal(await page.textContent('#live'), 'live');
  await shot(page, '02-overview');
});

test('jobs table filters by state, pages on the server and links to the job', async () => {
  await z.api('POST', '/jobs', { command: ['sh', '-c', 'echo broken >&2; exit 3'], name: 'broken', resources: { cpus: 0.1 } });
  const batch = Array.from({ length: 120 }, (_, i) => ({ command: ['true'], name: `bulk-${i}`, resources: { cpus: 0.1 } }));
  await z.api('POST', '/jobs', batch);
  await waitFor(async () => (await z.api('GET', '/jobs?state=failed')).jobs.length === 1, 'the failing job to fail');
  await page.goto(`${z.url}/#/jobs`);
  await page.waitForSelector('[data-ready=jobs] table.jobs');
  assert.equal(await page.locator('table.jobs tbody tr').count(), 50);
  const firstPage = await page.locator('table.jobs tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.job));
  await page.click('#page-older');
  await waitFor(async () => {
    const ids = await page.locator('table.jobs tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.job));
    return ids.length === 50 && !ids.some((id) => firstPage.includes(id));
  }, 'the second page');
  await page.selectOption('#filter-state', 'failed');
  await waitFor(async () => (await page.locator('table.jobs tbody tr').count()) === 1, 'the failed filter');
  assert.match(await page.textContent('table.jobs'), /broken/);
  assert.match(page.url(), /state=failed/);
  await shot(page, '03-jobs-failed');
  await page.click('table.jobs tbody tr a');
  await page.waitForSelector('[data-ready=job]');
  assert.match(await page.textContent('#job-head'), /exit code 3/);
  assert.equal(await page.locator('table.attempts tbody tr').count(), 1);
  await page.selectOption('#log-stream', 'stderr');
  await waitFor(async () => (await page.textContent('#log')).includes('broken'), 'stderr of the failed job');
});

test('job page follows a running job\'s output and state live', async () => {
  const { id } = await z.api('POST', '/jobs', {
    command: ['sh', '-c', 'echo line-one; while [ ! -e go ]; do sleep 0.05; done; echo line-two'],
    name: 'follow-me', cwd: z.dir, resources: { cpus: 0.1 },
  });
  await page.goto(`${z.url}/#/jobs/${id}`);
  await page.waitForSelector('[data-ready=job]');
  await waitFor(async () => (await page.textContent('#log')).includes('line-one'), 'the first line, live');
  assert.match(await page.textContent('#job-head .badge'), /running/);
  await shot(page, '04-job-running');
  writeFileSync(join(z.dir, 'go'), '');
  await waitFor(async () => (await page.textContent('#log')).includes('line-two'), 'the second line, live');
  await waitFor(async () => /succeeded/.test(await page.textContent('#job-head .badge')), 'the state to turn succeeded without a reload');
});

test('a job that cannot be placed says why, and can be cancelled from the page', async () => {
  const { id } = await z.api('POST', '/jobs', { command: ['true'], name: 'too-big', resources: { cpus: 64 } });
  await page.goto(`${z.url}/#/jobs/${id}`);
  await page.waitForSelector('#explain .explain');
  assert.match(await page.textContent('#explain'), /insufficient cpus/);
  await shot(page, '05-job-explain');
  await page.click('#cancel');
  await waitFor(async () => /cancelled/.test(await page.textContent('#job-head .badge')), 'the job to show cancelled');
});

test('a held job says so, and is released from its page', async () => {
  const { id } = await z.api('POST', '/jobs', { command: ['true'], name: 'held-one', hold: true });
  await page.goto(`${z.url}/#/jobs/${id}`);
  await page.waitForSelector('#explain .explain');
  assert.match(await page.textContent('#explain'), /held/);
  assert.match(await page.textContent('#hold'), /Release/);
  await page.click('#hold');
  await waitFor(async () => /succeeded/.test(await page.textContent('#job-head .badge')), 'the released job to run and succeed');
});

test('an ended job is requeued and deleted from its page', async () => {
  const { id } = await z.api('POST', '/jobs', { command: ['sh', '-c', 'exit 3'], name: 'fails' });
  await waitFor(async () => (await z.api('GET', `/jobs/${id}`)).state === 'failed', 'the job to fail');
  await page.goto(`${z.url}/#/jobs/${id}`);
  await page.waitForSelector('#requeue');
  await page.click('#requeue');
  await waitFor(async () => (await z.api('GET', `/jobs/${id}`)).attempts_total === 2, 'a second attempt');
  await waitFor(async () => /failed/.test(await page.textContent('#job-head .badge'))
    && (await page.locator('#requeue').count()) === 1, 'the page to show it failed again');
  await page.click('#delete');
  await waitFor(async () => page.url().endsWith('#/jobs'), 'the jobs list');
  const r = await fetch(`${z.url}/api/v1/jobs/${id}`, { headers: { Authorization: `Bearer ${z.token}` } });
  assert.equal(r.status, 404);
});

test('text from jobs is shown as text, never as markup', async () => {
  const { id } = await z.api('POST', '/jobs', {
    command: ['true'], name: '<img src=x id=injected>', resources: { cpus: 0.1 },
  });
  await page.goto(`${z.url}/#/jobs/${id}`);
  await page.waitForSelector('[data-ready=job]');
  assert.match(await page.textContent('#job-head h1'), /<img src=x id=injected>/);
  assert.equal(await page.locator('#injected').count(), 0);
});

test('flow run page draws the DAG, selects steps, approves, and updates live', async () => {
  const { id } = await z.api('POST', '/flows/runs', { flow: ETL });
  await waitFor(async () => (await z.api('GET', `/flows/runs/${id}/graph`)).steps[3].state === 'waiting_approval', 'the approval step');
  await page.goto(`${z.url}/#/runs`);
  await page.waitForSelector('[data-ready=runs] table.runs');
  assert.match(await page.textContent('table.runs'), /etl/);
  await page.click(`table.runs tr[data-run="${id}"] a`);
  await page.waitForSelector('#dag[data-load-ms]');
  assert.equal(await page.getAttribute('#dag', 'data-steps'), '5');
  await waitFor(async () => Number(await page.getAttribute('#timeline', 'data-rows')) === 5, 'timeline rows (extract, 3 instances, check)');
  assert.match(await page.textContent('#run-facts'), /waiting approval 1/);
  // Click on the drawn node: the panel shows the step, its instances and dependencies.
  const pos = await page.evaluate(() => window.zenithDag.positionOf('transform'));
  await page.mouse.click(pos.x, pos.y);
  await waitFor(async () => (await page.textContent('#step-name')) === 'transform', 'the clicked step in the panel');
  const panel = await page.textContent('#step-panel');
  assert.match(panel, /3\/3/);
  assert.match(panel, /Depends on\s*extract/);
  await shot(page, '06-run-waiting');
  const check = await page.evaluate(() => window.zenithDag.positionOf('check'));
  await page.mouse.click(check.x, check.y);
  await waitFor(async () => /exit code 4/.test(await page.textContent('#step-panel')), 'the failed step\'s reason');
  const gate = await page.evaluate(() => window.zenithDag.positionOf('publish'));
  await page.mouse.click(gate.x, gate.y);
  await page.click('#approve');
  await waitFor(async () => /succeeded/.test(await page.textContent('#run-head .badge')), 'the run to finish live after approval');
  await waitFor(async () => Number(await page.getAttribute('#timeline', 'data-rows')) === 6, 'the last step on the timeline');
  await shot(page, '07-run-done');
  // Double click opens the step's job.
  const ann = await page.evaluate(() => window.zenithDag.positionOf('announce'));
  await page.mouse.dblclick(ann.x, ann.y);
  await page.waitForSelector('[data-ready=job]');
  assert.match(await page.textContent('#job-head h1'), /etl\/announce/);
});

test('nodes page lists the agent with its capacity and heartbeat', async () => {
  await page.goto(`${z.url}/#/nodes`);
  await page.waitForSelector('[data-ready=nodes] table.nodes');
  const row = await page.textContent('table.nodes tbody');
  assert.match(row, /ready/);
  assert.match(row, /\/ 2/);
  assert.match(row, /ago/);
  await shot(page, '08-nodes');
});

const timings = {};

test('with 100,000 queued jobs the overview and the jobs table stay quick (server-side paging)', async () => {
  for (let b = 0; b < 10; b += 1) {
    const batch = Array.from({ length: 10000 }, (_, i) => ({
      command: ['true'], name: `queued-${b}-${i}`, constraints: ['never=here'],
    }));
    await z.api('POST', '/jobs', batch);
  }
  let t = Date.now();
  await page.goto(`${z.url}/#/`);
  await page.waitForSelector('[data-ready=overview]');
  timings.overview_100k_jobs_ms = Date.now() - t;
  assert.match(await page.textContent('#cards'), /Queued jobs\s*1000\d\d/);
  t = Date.now();
  await page.goto(`${z.url}/#/jobs?state=queued`);
  await page.waitForSelector('[data-ready=jobs] table.jobs');
  timings.jobs_table_100k_jobs_ms = Date.now() - t;
  assert.equal(await page.locator('table.jobs tbody tr').count(), 50);
  await page.click('#page-older');
  await waitFor(async () => (await page.locator('#page-newest').count()) === 1, 'the second page of 100,000');
  assert.equal(await page.locator('table.jobs tbody tr').count(), 50);
});

test('a 10,000-step flow loads, draws and finds a step', async () => {
  const { id } = await z.api('POST', '/flows/runs', { flow: steps(10000, 100) });
  const t0 = Date.now();
  await page.goto(`${z.url}/#/runs/${id}`);
  await page.waitForSelector('#dag[data-load-ms]', { timeout: 60000 });
  const dagMs = Date.now() - t0;
  await page.waitForSelector('#timeline[data-load-ms]', { timeout: 60000 });
  const allMs = Date.now() - t0;
  assert.equal(await page.getAttribute('#dag', 'data-steps'), '10000');
  const redrawMs = await page.evaluate(() => {
    const d = window.zenithDag;
    const t = performance.now();
    for (let k = 0; k < 20; k += 1) { d.scale *= 1.05; d.draw(); }
    return (performance.now() - t) / 20;
  });
  await page.click('#fit');
  await shot(page, '09-wide-fit');
  await page.fill('#step-search', 's73_42');
  await page.press('#step-search', 'Enter');
  await waitFor(async () => (await page.textContent('#step-name')) === 's73_42', 'the searched step');
  assert.match(await page.textContent('#step-panel'), /s72_42/);
  await shot(page, '10-wide-found');
  Object.assign(timings, { flow_steps: 10000, dag_shown_ms: dagMs, timeline_shown_ms: allMs, dag_redraw_ms: Number(redrawMs.toFixed(2)) });
  writeFileSync(join(OUT, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
  console.log('timings:', timings);
  await z.api('POST', `/flows/runs/${id}/cancel`);
});

test('a viewer token signs in, reads its namespace, and follows it by polling', async () => {
  const made = await z.api('POST', '/tokens', { name: 'vera', role: 'viewer', namespaces: ['ml'] });
  await z.api('POST', '/jobs', { command: ['echo', 'in-ml'], namespace: 'ml', name: 'ml-job' });
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const viewer = await ctx.newPage();
  viewer.on('pageerror', (e) => pageErrors.push(e.message));
  await viewer.goto(`${z.url}/`);
  await viewer.waitForSelector('#login-form');
  await viewer.fill('#token', made.token);
  await viewer.click('#login-form button[type=submit]');
  await viewer.waitForSelector('[data-ready=overview]');
  await waitFor(async () => (await viewer.textContent('#whoami')) === 'vera (viewer)', 'who is signed in');
  // Its only namespace is its default: the jobs page lists ml's jobs, and nothing else.
  await viewer.goto(`${z.url}/#/jobs`);
  await viewer.waitForSelector('[data-ready=jobs]');
  const rows = await viewer.$$eval('#jobs-table tbody tr',
    (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(rows[0][1], 'ml-job');
  assert.equal(rows[0][3], 'ml');
  // The event stream covers every namespace: a viewer of one re-reads by polling instead.
  await waitFor(async () => (await viewer.textContent('#live')) === 'polling', 'the polling indicator');
  await shot(viewer, '11-viewer-jobs');
  await ctx.close();
});

test('share page shows each namespace and user with weight, holdings and quota', async () => {
  await z.api('PUT', '/namespaces/lab', { weight: 3, quota: { cpus: 1 } });
  await z.api('POST', '/jobs', { command: ['sleep', '30'], namespace: 'lab', name: 'lab-job', resources: { cpus: 1 } });
  await page.goto(`${z.url}/#/share`);
  await page.waitForSelector('[data-ready=share] table.share');
  await waitFor(async () => {
    const rows = await page.$$eval('table.share tbody tr[data-party=lab] td', (tds) => tds.map((td) => td.textContent));
    return rows.length && rows[1] === '3' && rows[2] === '1' && /cpus 1/.test(rows[10]);
  }, 'lab with weight 3, one running attempt and its quota');
  const users = await page.$$eval('table.share tbody tr.user td.indent', (tds) => tds.map((td) => td.textContent));
  assert.ok(users.includes('admin'), JSON.stringify(users));
  await shot(page, '12-share');
});

test('no script errors on any page', () => {
  assert.deepEqual(pageErrors, []);
});
