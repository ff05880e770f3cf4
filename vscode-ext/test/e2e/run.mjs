// End-to-end test of the extension in a real VS Code: code-server serves VS Code to headless
// Chromium (Debian's, driven by playwright-core); the built .vsix is installed into a fresh
// extensions folder, and a workspace holding a real service (tests/targets/lsp_service.py, run
// by a pyenv CPython from this folder) is opened. Then, as a user would, through the palette:
// the extension's output channel reports the real fp-lsp it started; "Attach to Process…"
// lists the service first and attaches (the status bar names its pid); "Monitor This
// Function" on rare() and a burst of exactly 100 calls in the service show "100 calls" in the
// lens; "Watch This Function" on price() shows the values the service really passed and got
// back as a diagnostic in the Problems view; a command this fp-lsp does not serve says so;
// "Detach" leaves the service running. The README's screenshots are taken on the way.
//
//   node test/e2e/run.mjs --vsix ../build/fp-vscode.vsix --server ../build/bin/fp-lsp
//
// Every wait is a bounded poll on an observable condition; the whole run has a deadline.
// It kills only what it started: code-server's process group and the Chromium it launched.
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { CODE_SERVER_VERSION, NODE_VERSION, installCodeServer, killGroup, run, running, tail } from './code-server.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const extDir = path.resolve(here, '..', '..');
const repo = path.resolve(extDir, '..');
const build = process.env.FP_BUILD || path.join(repo, 'build');

const { values: opt } = parseArgs({
  options: {
    vsix: { type: 'string', default: path.join(build, 'fp-vscode.vsix') },
    server: { type: 'string', default: path.join(build, 'bin', 'fp-lsp') },
    out: { type: 'string', default: path.join(build, 'vscode-e2e') },
    chromium: { type: 'string', default: process.env.FP_CHROMIUM || '/usr/bin/chromium' },
    timeout: { type: 'string', default: '300' },
    keep: { type: 'boolean', default: false },
    python: { type: 'string', default: process.env.FP_E2E_PYTHON || '' },
    screenshots: { type: 'string', default: '' },
  },
});
const targets = path.join(repo, 'tests', 'targets');

// The flags Chromium needs on these machines: no sandbox as root, no GPU, and nothing that
// reaches for the network (which is closed: background fetches only produce refused connections).
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const started = Date.now();
const say = (m) => console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${m}`);

/** Polls `probe` until it returns a truthy value, at most `ms`; the failure says what was seen. */
async function waitFor(what, ms, probe, seen = () => '') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${describeSeen(await seen())}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function describeSeen(s) {
  return s ? `; last seen:\n${tail(String(s), 30)}` : '';
}

function need(file, what, fix) {
  if (!existsSync(file)) {
    throw new Error(`${what} not found at ${file}. ${fix}`);
  }
}

/** What the run started, so that cleanup kills exactly that. */
const owned = { codeServer: undefined, codeServerExit: undefined, browserServer: undefined, runDir: undefined, target: undefined };

// One cleanup, however many ways the run ends (failure, deadline, signal) at once.
let cleaning;
function cleanup() {
  cleaning ??= killAndRemove();
  return cleaning;
}

async function killAndRemove() {
  for (const child of running) {
    killGroup(child.pid, 'SIGKILL'); // an install or --install-extension still running
  }
  const { browserServer, codeServer, target } = owned;
  owned.browserServer = owned.codeServer = owned.target = undefined;
  if (target !== undefined) {
    await stopTarget(target);
  }
  if (browserServer !== undefined) {
    await Promise.race([browserServer.close(), new Promise((r) => setTimeout(r, 10_000))]).catch(() => {});
    await browserServer.kill().catch(() => {});
  }
  if (codeServer !== undefined && codeServer.exitCode === null && codeServer.signalCode === null) {
    // Its group: code-server, its VS Code server, the extension host and the fp-lsp it started.
    killGroup(codeServer.pid, 'SIGTERM');
    const gone = await Promise.race([owned.codeServerExit.then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))]);
    if (!gone) {
      killGroup(codeServer.pid, 'SIGKILL');
    }
  }
  // Whatever else is left in the group (a child that outlived code-server).
  if (codeServer !== undefined) {
    killGroup(codeServer.pid, 'SIGKILL');
  }
  if (owned.runDir !== undefined && !opt.keep) {
    rmSync(owned.runDir, { recursive: true, force: true });
  }
}

/** Starts code-server on a port the kernel picks; resolves with its URL once it listens. */
async function startCodeServer(cs, dirs, logFile) {
  const child = spawn(
    cs.node,
    [
      cs.codeServer,
      '--config', dirs.config,
      '--user-data-dir', dirs.userData,
      '--extensions-dir', dirs.extensions,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--ignore-last-opened',
      dirs.workspace,
    ],
    { env: dirs.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  owned.codeServer = child;
  owned.codeServerExit = new Promise((r) => child.on('exit', r));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  owned.codeServerOutput = () => out;
  const url = await waitFor(
    'code-server to listen',
    60_000,
    () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`code-server exited (${child.signalCode ?? child.exitCode}) before listening:\n${tail(out)}`);
      }
      return /HTTP server listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(out)?.[1];
    },
    () => out,
  );
  writeFileSync(logFile, out);
  return url;
}

/** The CPython that runs the service: --python, else the newest pyenv 3.8+, else /usr/bin/python3. */
function findPython() {
  if (opt.python !== '') {
    return opt.python;
  }
  let root = process.env.PYENV_ROOT || path.join(os.homedir(), '.pyenv');
  try {
    root = execFileSync('pyenv', ['root'], { encoding: 'utf8', timeout: 10_000 }).trim() || root;
  } catch {
    // No pyenv on PATH: its default root, if any.
  }
  const versions = path.join(root, 'versions');
  const found = existsSync(versions)
    ? readdirSync(versions)
        .map((v) => ({ v, m: /^3\.(\d+)\.(\d+)$/.exec(v) }))
        .filter(({ v, m }) => m !== null && Number(m[1]) >= 8 && existsSync(path.join(versions, v, 'bin', 'python3')))
        .sort((a, b) => Number(b.m[1]) - Number(a.m[1]) || Number(b.m[2]) - Number(a.m[2]))
    : [];
  if (found.length > 0) {
    return path.join(versions, found[0].v, 'bin', 'python3');
  }
  return '/usr/bin/python3';
}

/**
 * Starts the service in the workspace, in its own process group; resolves once it announced
 * readiness (its pid), failing with what it wrote when it exits or does not get ready.
 */
async function startTarget(python, workspace, runDir) {
  const ready = path.join(runDir, 'target.ready');
  const child = spawn(python, [path.join(workspace, 'lsp_service.py'), ready], {
    cwd: workspace,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const t = { child, out: '', err: '', exited: new Promise((r) => child.on('exit', r)) };
  owned.target = t;
  child.stdout.on('data', (d) => (t.out += d));
  child.stderr.on('data', (d) => (t.err += d));
  await waitFor(
    `the service (${python}) to announce readiness`,
    30_000,
    () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`the service exited (${child.signalCode ?? child.exitCode}) before it was ready:\n${tail(t.err)}`);
      }
      return existsSync(ready) && readFileSync(ready, 'utf8').includes('\nready\n');
    },
    () => t.err,
  );
  t.pid = child.pid;
  t.lines = () => t.out.split('\n').filter((l) => l !== '');
  return t;
}

/** What the service reported going wrong, or undefined; it must still be running. */
function targetProblem(t) {
  if (t.child.exitCode !== null || t.child.signalCode !== null) {
    return `the service exited (${t.child.signalCode ?? t.child.exitCode}):\n${tail(t.err)}`;
  }
  const errors = t.lines().filter((l) => l.startsWith('ERROR'));
  return errors.length > 0 ? errors.join('\n') : undefined;
}

async function stopTarget(t) {
  if (t.child.exitCode === null && t.child.signalCode === null) {
    killGroup(t.child.pid, 'SIGTERM');
    const gone = await Promise.race([t.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
    if (!gone) {
      killGroup(t.child.pid, 'SIGKILL');
    }
  }
}

/** 1-based line of the first line of `file` that `re` matches. */
function lineOf(file, re) {
  const i = readFileSync(file, 'utf8').split('\n').findIndex((l) => re.test(l));
  if (i < 0) {
    throw new Error(`no line matching ${re} in ${file}`);
  }
  return i + 1;
}

/** Text of the output view in the panel, as rendered (what is on screen). */
async function panelText(page) {
  const lines = page.locator('.part.panel .monaco-editor .view-lines').first();
  const text = (await lines.count()) === 0 ? '' : await lines.innerText().catch(() => '');
  return text.replace(/\u00a0/g, ' ');
}

/**
 * Whether the output channel shows `line`: the output view's own filter narrows it to the
 * lines holding `term` (the editor renders only what is on screen), then the text is matched
 * whitespace-insensitively, since long lines wrap. The filter is cleared again.
 */
async function channelShows(page, term, line) {
  const filter = page.locator('.part.panel input[placeholder*="excludeText"]:visible').first();
  await filter.fill(term);
  try {
    // Filtered once every entry on screen holds the term (or none is left).
    const text = await waitFor(`the output view to apply the filter "${term}"`, 5000, async () => {
      const t = await panelText(page);
      const entries = squash(t).split(/(?=\d{4}-\d\d-\d\d\d\d:\d\d:\d\d\.\d{3}\[)/).filter((e) => e !== '');
      return entries.every((e) => e.includes(squash(term))) ? t || ' ' : undefined;
    });
    return squash(text).includes(squash(line));
  } finally {
    const filtered = await panelText(page);
    await filter.fill('');
    await waitFor('the output view to show the whole channel again', 5000, async () => (await panelText(page)) !== filtered).catch(() => {});
  }
}

const squash = (s) => s.replace(/\s+/g, '');

/** Opens the command palette (F1) with `text` typed in it. The widget of the command run just
 * before may still be closing (seen visible, gone when typed into): opened again until the text
 * is in it. */
async function typeInPalette(page, text) {
  const input = page.locator('.quick-input-widget input.input');
  await waitFor(`the command palette to take "${text}"`, 20_000, async () => {
    if (!(await input.isVisible())) {
      await page.keyboard.press('F1');
    }
    try {
      await input.waitFor({ state: 'visible', timeout: 3_000 });
      await input.fill(text, { timeout: 3_000 });
      return (await input.inputValue({ timeout: 1_000 })) === text;
    } catch {
      return false;
    }
  });
}

/** Opens the command palette (F1) with `text` typed; waits for a row that contains `row`. */
async function palette(page, text, row) {
  await typeInPalette(page, text);
  const match = page.locator('.quick-input-list .monaco-list-row', { hasText: row });
  await waitFor(
    `"${row}" in the palette after typing "${text}"`,
    20_000,
    async () => (await match.count()) > 0,
    async () => (await page.locator('.quick-input-list').innerText().catch(() => '')) || '(empty list)',
  );
  return match.first();
}

/** Runs a palette command by its title, as a user picks it. */
async function command(page, title) {
  const row = await palette(page, `>${title}`, title);
  await row.click();
}

/** The extension's status bar item (its text, as shown). */
async function statusText(page) {
  const item = page.locator('.part.statusbar [id="fp.fp-vscode.fp.status"]');
  return (await item.count()) === 0 ? '' : (await item.first().innerText().catch(() => '')).replace(/\s+/g, ' ').trim();
}

async function waitStatus(page, what, test) {
  return waitFor(`the status bar item to show ${what}`, 30_000, async () => test(await statusText(page)), async () => {
    const all = await page.locator('.part.statusbar').innerText().catch(() => '');
    return `fp item: "${await statusText(page)}"; status bar: ${all.replace(/\s+/g, ' ')}`;
  });
}

/** Moves the cursor to a 1-based line of the active editor (Go to Line), and waits until it is there. */
async function goToLine(page, line) {
  await typeInPalette(page, `:${line}`);
  await page.keyboard.press('Enter');
  await waitFor(`the cursor on line ${line}`, 15_000, async () => {
    const t = await page.locator('.part.statusbar').innerText().catch(() => '');
    return new RegExp(`Ln ${line}, Col \\d+`).test(t);
  }, () => page.locator('.part.statusbar').innerText().catch(() => ''));
}

/** The code lens texts shown in the editor now. */
async function lensTexts(page) {
  // One element per lens; a line's lenses are separated by " | ".
  return page.locator('.editor-instance .codelens-decoration > a, .editor-instance .codelens-decoration > span').allInnerTexts().catch(() => []);
}

/** The visible notifications' texts. */
async function notificationTexts(page) {
  return page.locator('.notifications-toasts .notification-list-item-message').allInnerTexts().catch(() => []);
}

/** Closes every notification toast (so that the next screenshot shows the code). */
async function clearNotifications(page) {
  for (const close of await page.locator('.notifications-toasts .codicon-notifications-clear').all()) {
    await close.click().catch(() => {});
  }
}

/** The log file VS Code keeps for the extension's output channel, for the record. */
function extensionLog(userData) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        walk(p);
      } else if (e.name === 'fp.log') {
        found.push(p);
      }
    }
  };
  if (existsSync(path.join(userData, 'logs'))) {
    walk(path.join(userData, 'logs'));
  }
  return found.map((f) => readFileSync(f, 'utf8')).join('\n');
}

async function main() {
  const vsix = path.resolve(opt.vsix);
  const server = path.resolve(opt.server);
  const outDir = path.resolve(opt.out);
  need(vsix, 'The extension package', 'Build it with `make vsix`.');
  need(server, 'fp-lsp', 'Build it with `make build`.');
  need(opt.chromium, 'Chromium', 'Install it with `apt-get install -y chromium`.');
  const { chromium } = await import('playwright-core').catch(() => {
    throw new Error('playwright-core is not installed: run `npm ci` in vscode-ext/.');
  });
  mkdirSync(outDir, { recursive: true });

  say(`code-server ${CODE_SERVER_VERSION} on Node ${NODE_VERSION}: installing or reusing the cached install`);
  const cs = await installCodeServer(say);
  armDeadline(); // the install has bounds of its own; the deadline is for the run
  const serverVersion = (await run(server, ['--version'], { timeoutMs: 10_000, label: 'fp-lsp --version' })).split('\n')[0];

  // A fresh run folder: workspace, VS Code's user data, extensions, code-server's config and XDG dirs.
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'fp-vscode-e2e-'));
  owned.runDir = runDir;
  const dirs = {
    workspace: path.join(runDir, 'workspace'),
    userData: path.join(runDir, 'user-data'),
    extensions: path.join(runDir, 'extensions'),
    config: path.join(runDir, 'code-server.yaml'),
  };
  mkdirSync(dirs.workspace);
  for (const f of ['lsp_service.py', 'fptarget.py']) {
    cpSync(path.join(targets, f), path.join(dirs.workspace, f));
  }
  mkdirSync(path.join(dirs.userData, 'User'), { recursive: true });
  mkdirSync(path.join(dirs.userData, 'Machine'), { recursive: true });
  // The extension host runs on the server side (a remote, as with Remote-SSH), where a
  // machine-scoped setting like fp.serverPath is read from the Machine settings, not the User ones.
  writeFileSync(path.join(dirs.userData, 'Machine', 'settings.json'), JSON.stringify({ 'fp.serverPath': server }, null, 2));
  mkdirSync(dirs.extensions, { recursive: true });
  writeFileSync(dirs.config, 'bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n');
  writeFileSync(
    path.join(dirs.userData, 'User', 'settings.json'),
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'workbench.tips.enabled': false,
        'workbench.enableExperiments': false,
        'telemetry.telemetryLevel': 'off',
        'update.mode': 'none',
        'extensions.autoCheckUpdates': false,
        'extensions.autoUpdate': false,
        'extensions.ignoreRecommendations': true,
        'security.workspace.trust.enabled': false,
        'chat.disableAIFeatures': true,
        'workbench.secondarySideBar.defaultVisibility': 'hidden',
      },
      null,
      2,
    ),
  );
  // Everything that code-server, VS Code and Chromium put in the temporary folder (IPC
  // sockets, profiles) goes into the run folder, and so away with it.
  const tmp = path.join(runDir, 'tmp');
  mkdirSync(tmp);
  process.env.TMPDIR = tmp;
  const xdg = (name) => {
    const d = path.join(runDir, 'xdg', name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  dirs.env = {
    ...process.env,
    PATH: `${cs.nodeBin}${path.delimiter}${process.env.PATH ?? ''}`,
    XDG_CONFIG_HOME: xdg('config'),
    XDG_DATA_HOME: xdg('data'),
    XDG_CACHE_HOME: xdg('cache'),
    TMPDIR: tmp,
  };

  say(`installing ${path.basename(vsix)} into a fresh extensions folder`);
  const installOut = await run(
    cs.node,
    [cs.codeServer, '--user-data-dir', dirs.userData, '--extensions-dir', dirs.extensions, '--install-extension', vsix],
    { env: dirs.env, timeoutMs: 120_000, label: 'code-server --install-extension' },
  );
  if (!/successfully installed/i.test(installOut)) {
    throw new Error(`code-server --install-extension did not report success:\n${tail(installOut)}`);
  }
  const installed = readdirSync(dirs.extensions).filter((d) => d.startsWith('fp.fp-vscode-'));
  if (installed.length !== 1) {
    throw new Error(`expected one fp.fp-vscode-* folder in ${dirs.extensions}, found: ${readdirSync(dirs.extensions).join(', ')}`);
  }
  say(`installed ${installed[0]}`);

  const python = findPython();
  const target = await startTarget(python, dirs.workspace, runDir);
  say(`the service runs: pid ${target.pid}, ${python}`);
  const service = path.join(dirs.workspace, 'lsp_service.py');

  const url = await startCodeServer(cs, dirs, path.join(outDir, 'code-server.log'));
  say(`code-server listens at ${url} (pid ${owned.codeServer.pid})`);

  owned.browserServer = await chromium.launchServer({
    executablePath: opt.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
    // This script closes it, in cleanup(), also on a signal.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  say(`Chromium started (pid ${owned.browserServer.process().pid})`);
  const browser = await chromium.connect(owned.browserServer.wsEndpoint(), { timeout: 30_000 });
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 860 } })).newPage();
  page.setDefaultTimeout(30_000);
  const consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') {
      consoleErrors.push(m.text());
    }
  });

  try {
    await page.goto(`${url}/?folder=${encodeURIComponent(dirs.workspace)}`, { timeout: 60_000 });
    await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 90_000 });
    say('workbench loaded');

    // Opening a Python file activates the extension (activationEvents: onLanguage:python).
    const file = await palette(page, 'lsp_service.py', 'lsp_service.py');
    await file.click();
    await page.locator('.tabs-container .tab', { hasText: 'lsp_service.py' }).waitFor({ state: 'visible' });
    await page.locator('.editor-instance .view-lines', { hasText: 'class Cart' }).waitFor({ state: 'visible' });
    say('lsp_service.py is open');

    // The extension's commands are in the palette.
    await palette(page, '>fp: ', 'fp: Attach to Process…');
    for (const title of ['fp: Watch This Function', 'fp: Reload Function Into Process', 'fp: Show Thread Stacks']) {
      await palette(page, `>${title}`, title);
    }
    say('the fp commands are in the palette');

    // Its output channel, shown by its own command, reports the fp-lsp it found and ran.
    await command(page, 'fp: Show Server Log');
    const found = `using ${serverVersion} at ${server} (from setting)`;
    await waitFor(`"${found}" in the fp output channel`, 60_000, () => channelShows(page, 'using fp-lsp', found), () => panelText(page));
    say(`the output channel says: ${found}`);
    // The commands it serves, as the extension logged them (its log file, read as it grows).
    const served = await waitFor(
      'fp-lsp to answer initialize ("fp-lsp is running" in the log)',
      60_000,
      () => /fp-lsp is running; it serves (.*)/.exec(extensionLog(dirs.userData))?.[1]?.split(', '),
      () => extensionLog(dirs.userData),
    );
    say(`fp-lsp is running and serves ${served.join(', ')}`);
    await waitStatus(page, '"fp: not attached"', (t) => t.includes('fp: not attached'));
    await page.keyboard.press('Escape');

    // Attach: the service is the first row (its cwd is the workspace), then the status bar names it.
    await page.locator('.editor-instance .view-lines', { hasText: 'class Cart' }).click();
    await command(page, 'fp: Attach to Process…');
    const first = page.locator('.quick-input-list .monaco-list-row[data-index="0"]');
    await waitFor(
      `the service (${target.pid}) first in the attach list`,
      30_000,
      async () => (await first.count()) > 0 && (await first.innerText()).includes(`${target.pid}`),
      async () => (await page.locator('.quick-input-list').innerText().catch(() => '')) || '(empty list)',
    );
    const row = (await first.innerText()).replace(/\s+/g, ' ');
    if (!row.includes('lsp_service.py') || !row.includes('Python 3.')) {
      throw new Error(`the attach row does not show the command line and the Python version: ${row}`);
    }
    say(`attach list, first row: ${row}`);
    // Searchable: the pid alone leaves its row.
    await page.locator('.quick-input-widget input.input').fill(`${target.pid}`);
    await waitFor(`the attach list filtered to ${target.pid}`, 10_000, async () => {
      const rows = await page.locator('.quick-input-list .monaco-list-row').allInnerTexts();
      return rows.length === 1 && rows[0].includes(`${target.pid}`);
    }, async () => page.locator('.quick-input-list').innerText().catch(() => ''));
    await page.screenshot({ path: path.join(outDir, 'attach.png') });
    await page.keyboard.press('Enter');
    const attached = await waitStatus(page, `"fp: ${target.pid}"`, (t) => t.includes(`fp: ${target.pid}`) && t);
    say(`status bar: ${attached}`);

    // Monitor rare(), then make the service call it exactly 100 times: the lens counts them.
    await goToLine(page, lineOf(service, /^def rare\(/) + 1);
    await command(page, 'fp: Monitor This Function');
    await waitStatus(page, '"monitoring 1 function"', (t) => t.includes('monitoring 1 function'));
    const bursts = () => target.lines().filter((l) => l.startsWith('burst ')).length;
    process.kill(target.pid, 'SIGUSR1');
    await waitFor('the service to report its burst of 100 calls', 15_000, () => bursts() === 1, () => target.out);
    const lens = await waitFor(
      'the lens of rare() to show "100 calls"',
      30_000,
      async () => (await lensTexts(page)).find((t) => t.includes('100 calls')),
      async () => (await lensTexts(page)).join('\n'),
    );
    if (!/^100 calls · \d+\/s · p50 .+ · p95 .+ · max .+/.test(lens.trim())) {
      throw new Error(`rare()'s lens does not read "100 calls · N/s · p50 · p95 · max": ${lens}`);
    }
    say(`rare()'s lens: ${lens.trim()}`);
    await page.screenshot({ path: path.join(outDir, 'monitor.png') });

    // Watch price(): its calls, with the arguments the service passes and what it returns, as a diagnostic.
    await goToLine(page, lineOf(service, /^\s+base = \{/));
    await command(page, 'fp: Watch This Function');
    const watching = await waitStatus(page, '"watching 1"', (t) => t.includes('watching 1') && t);
    await command(page, 'Problems: Focus on Problems View');
    const problem = await waitFor(
      "price()'s watched call in the Problems view",
      30_000,
      async () => {
        const t = (await page.locator('.markers-panel').innerText().catch(() => '')).replace(/\s+/g, ' ');
        return t.includes("price: args=('apple', 2") && t.includes('return_obj=6') && t;
      },
      () => page.locator('.part.panel').innerText().catch(() => ''),
    );
    const value = /price: args=\('apple', 2[^·]*· kwargs=[^·]*· return_obj=6 · [\d.]+ ms/.exec(problem)?.[0];
    if (value === undefined) {
      throw new Error(`the diagnostic does not read "price: args=('apple', 2...) · kwargs=... · return_obj=6 · N ms": ${problem}`);
    }
    say(`Problems: ${value}; status bar: ${watching}`);
    await clearNotifications(page);
    await page.screenshot({ path: path.join(outDir, 'watch.png') });

    // A command this fp-lsp does not serve (fp.trace before the profiling views arrive) says so.
    if (!served.includes('fp.trace')) {
      await goToLine(page, lineOf(service, /^def checkout\(/) + 1);
      await command(page, 'fp: Trace This Function');
      const said = await waitFor(
        'the message that this fp-lsp does not serve fp.trace',
        15_000,
        async () => (await notificationTexts(page)).find((t) => t.includes('(fp.trace) is not served by this fp-lsp')),
        async () => (await notificationTexts(page)).join('\n'),
      );
      say(`Trace This Function: ${said.replace(/\s+/g, ' ').slice(0, 160)}…`);
      // Its "Open README" button opens the extension's README at the section about it.
      const toast = page.locator('.notifications-toasts .notification-list-item', { hasText: '(fp.trace) is not served' });
      await toast.first().locator('.monaco-button', { hasText: 'Open README' }).click();
      await page.locator('.tabs-container .tab', { hasText: /readme\.md/i }).waitFor({ state: 'visible', timeout: 15_000 });
      await page
        .locator('.editor-instance .view-lines', { hasText: '### A command this fp-lsp does not serve' })
        .waitFor({ state: 'visible', timeout: 15_000 });
      say('"Open README" shows the section "A command this fp-lsp does not serve"');
      await clearNotifications(page);
      // The same from a lens: fp-lsp 0.1.0 puts "trace" in its lenses without serving fp.trace.
      await page.locator('.tabs-container .tab', { hasText: 'lsp_service.py' }).click();
      await goToLine(page, lineOf(service, /^def checkout\(/) + 1);
      const traceLens = page.locator('.editor-instance .codelens-decoration > a', { hasText: /^trace$/ });
      await waitFor('a "trace" lens on screen', 15_000, async () => (await traceLens.count()) > 0, async () => (await lensTexts(page)).join('\n'));
      await traceLens.first().click();
      await waitFor(
        'the same message from the "trace" lens',
        15_000,
        async () => (await notificationTexts(page)).some((t) => t.includes('(fp.trace) is not served by this fp-lsp')),
        async () => (await notificationTexts(page)).join('\n'),
      );
      say('the "trace" lens says the same, not "command not found"');
      await clearNotifications(page);
    } else {
      say('this fp-lsp serves fp.trace: the message for a missing command is not exercised');
    }

    // Detach, from the status bar item's actions: it says so, and the service goes on as before.
    await page.locator('.part.statusbar [id="fp.fp-vscode.fp.status"]').click();
    const detach = page.locator('.quick-input-list .monaco-list-row', { hasText: 'Detach' });
    await waitFor('"Detach" among the status bar item\'s actions', 15_000, async () => (await detach.count()) > 0,
      async () => page.locator('.quick-input-list').innerText().catch(() => ''));
    await detach.first().click();
    await waitStatus(page, '"fp: not attached"', (t) => t.includes('fp: not attached'));
    const ticks = target.lines().length;
    await waitFor('the service to go on after detach', 10_000, () => target.lines().length > ticks + 2, () => target.out);
    const wrong = targetProblem(target);
    if (wrong !== undefined) {
      throw new Error(`the service reported a problem: ${wrong}`);
    }
    say('detached; the service runs on, with no error of its own');

    const shot = path.join(outDir, 'activated.png');
    await page.screenshot({ path: shot });
    const shots = ['attach.png', 'monitor.png', 'watch.png'];
    say(`screenshots in ${outDir}: ${shots.join(', ')}, activated.png`);
    if (opt.screenshots !== '') {
      // The README's pictures: --screenshots vscode-ext/media.
      mkdirSync(opt.screenshots, { recursive: true });
      for (const f of shots) {
        cpSync(path.join(outDir, f), path.join(path.resolve(opt.screenshots), f));
      }
      say(`copied ${shots.join(', ')} to ${opt.screenshots}`);
    }
  } catch (err) {
    const shot = path.join(outDir, 'failure.png');
    await page.screenshot({ path: shot }).catch(() => {});
    err.message += `\nscreenshot of the failure: ${shot}`;
    if (consoleErrors.length > 0) {
      err.message += `\nbrowser console errors:\n${tail(consoleErrors.join('\n'), 15)}`;
    }
    throw err;
  } finally {
    writeFileSync(path.join(outDir, 'code-server.log'), owned.codeServerOutput?.() ?? '');
    writeFileSync(path.join(outDir, 'fp.log'), extensionLog(dirs.userData));
    await browser.close().catch(() => {});
  }
}

const deadlineMs = Number(opt.timeout) * 1000;
let timer;
let armDeadline;
const deadline = new Promise((_, reject) => {
  armDeadline = () => {
    timer = setTimeout(() => reject(new Error(`the run passed its deadline of ${opt.timeout} s (--timeout)`)), deadlineMs);
  };
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`[e2e] ${sig}: stopping what the run started`);
    void cleanup().finally(() => process.exit(130));
  });
}

let failed = false;
try {
  await Promise.race([main(), deadline]);
} catch (err) {
  failed = true;
  console.error(`[e2e] FAILED: ${err.message}`);
  if (owned.codeServerOutput) {
    console.error(`[e2e] code-server's output:\n${tail(owned.codeServerOutput(), 20)}`);
  }
} finally {
  clearTimeout(timer);
  await cleanup();
}
say(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`vscode-e2e: ${failed ? '0 passed, 1 failed' : '1 passed, 0 failed'}`);
process.exit(failed ? 1 : 0);
