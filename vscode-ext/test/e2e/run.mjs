// End-to-end test of the extension in a real VS Code: code-server serves VS Code to headless
// Chromium (Debian's, driven by playwright-core); the built .vsix is installed into a fresh
// extensions folder, a workspace with a Python file is opened, and the test asserts what only
// the activated extension can show: its commands in the palette, and its output channel
// reporting the real fp-lsp it found, probed and started. A screenshot is saved.
//
//   node test/e2e/run.mjs --vsix ../build/fp-vscode.vsix --server ../build/bin/fp-lsp
//
// Every wait is a bounded poll on an observable condition; the whole run has a deadline.
// It kills only what it started: code-server's process group and the Chromium it launched.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  },
});

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
const owned = { codeServer: undefined, codeServerExit: undefined, browserServer: undefined, runDir: undefined };

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
  const { browserServer, codeServer } = owned;
  owned.browserServer = owned.codeServer = undefined;
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

/**
 * What the extension must say of an fp-lsp that exits before initialize: its exit code and
 * the first line it writes on stderr, both taken from running it here the same way (bounded).
 */
function earlyExitMessage(server) {
  const r = spawnSync(server, [], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000, killSignal: 'SIGKILL', encoding: 'utf8' });
  const first = (r.stderr ?? '').split('\n').find((l) => l.trim() !== '');
  const how = r.signal ? `was killed by ${r.signal}` : `exited with code ${r.status}`;
  return `fp-lsp ${how} before it answered initialize` + (first === undefined ? '.' : `; it said: "${first}"`);
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

/** Opens the command palette (F1) with `text` typed; waits for a row that contains `row`. */
async function palette(page, text, row) {
  const input = page.locator('.quick-input-widget input.input');
  if (!(await input.isVisible())) {
    await page.keyboard.press('F1');
  }
  await input.waitFor({ state: 'visible', timeout: 15_000 });
  await input.fill(text);
  const match = page.locator('.quick-input-list .monaco-list-row', { hasText: row });
  await waitFor(
    `"${row}" in the palette after typing "${text}"`,
    20_000,
    async () => (await match.count()) > 0,
    async () => (await page.locator('.quick-input-list').innerText().catch(() => '')) || '(empty list)',
  );
  return match.first();
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
  cpSync(path.join(here, 'workspace'), dirs.workspace, { recursive: true });
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
    const file = await palette(page, 'shop.py', 'shop.py');
    await file.click();
    await page.locator('.tabs-container .tab', { hasText: 'shop.py' }).waitFor({ state: 'visible' });
    await page.locator('.editor-instance .view-lines', { hasText: 'class Cart' }).waitFor({ state: 'visible' });
    say('shop.py is open');

    // The extension's commands are in the palette.
    await palette(page, '>fp: ', 'fp: Attach to Process…');
    for (const title of ['fp: Watch This Function', 'fp: Reload Function Into Process', 'fp: Show Thread Stacks']) {
      await palette(page, `>${title}`, title);
    }
    say('the fp commands are in the palette');

    // Its output channel, shown by its own command, reports the fp-lsp it found and ran.
    await (await palette(page, '>fp: Show Server Log', 'fp: Show Server Log')).click();
    const found = `using ${serverVersion} at ${server} (from setting)`;
    await waitFor(`"${found}" in the fp output channel`, 60_000, () => channelShows(page, 'using fp-lsp', found), () => panelText(page));
    say(`the output channel says: ${found}`);

    // Then what came of starting it: the server answered initialize, or it exited first and
    // the extension's message quotes its exit code and the first line it wrote on stderr,
    // which must be what this fp-lsp does when started the same way (stdio, no arguments).
    const early = earlyExitMessage(server);
    const outcome = await waitFor(
      'fp-lsp to answer initialize, or the extension to say why it did not',
      60_000,
      async () => {
        if (await channelShows(page, 'fp-lsp is running', 'fp-lsp is running')) {
          return 'fp-lsp answered initialize: "fp-lsp is running"';
        }
        return (await channelShows(page, 'before it answered initialize', early)) ? `the output channel says: ${early}` : undefined;
      },
      () => panelText(page),
    );
    say(outcome);

    const shot = path.join(outDir, 'activated.png');
    await page.screenshot({ path: shot });
    say(`screenshot: ${shot} (${statSync(shot).size} bytes)`);
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
