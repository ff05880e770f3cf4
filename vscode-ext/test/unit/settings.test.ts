import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { extensionDir, manifest } from './manifest';
import {
  DEFAULT_SETTINGS,
  initializationOptions,
  needsRestart,
  needsUpdate,
  readSettings,
  SERVER_WATCH_EXPR,
  serverExecutable,
  type FpSettings,
  type SettingGetter,
} from '../../src/settings';

function getter(values: Record<string, unknown>): SettingGetter {
  return (key) => values[key];
}

/** The `fp.*` keys of package.json, without the prefix ("watch.depth"). */
const declared = manifest.contributes.configuration.properties;

describe('settings', () => {
  it('has the defaults package.json declares', () => {
    const s = readSettings(getter({}));
    assert.deepEqual(s, DEFAULT_SETTINGS);
    const flat: Record<string, unknown> = {
      serverPath: s.serverPath,
      reloadOnSave: s.reloadOnSave,
      hotLineThreshold: s.hotLineThreshold,
      lensRefreshRate: s.lensRefreshRate,
      monitorInterval: s.monitorInterval,
      'watch.expr': s.watch.expr,
      'watch.depth': s.watch.depth,
      'watch.limit': s.watch.limit,
    };
    for (const [key, value] of Object.entries(flat)) {
      assert.deepEqual(declared[`fp.${key}`]?.default, value, key);
    }
    // Every declared setting is read, except the one vscode-languageclient reads itself.
    const read = new Set([...Object.keys(flat).map((k) => `fp.${k}`), 'fp.trace.server']);
    assert.deepEqual(Object.keys(declared).sort(), [...read].sort());
  });

  it('takes values of the right type and range', () => {
    const s = readSettings(
      getter({
        serverPath: '/opt/fp/bin/fp-lsp',
        reloadOnSave: true,
        hotLineThreshold: 2.5,
        lensRefreshRate: 1000,
        monitorInterval: 0.5,
        'watch.expr': 'args[0], return_obj',
        'watch.depth': 4,
        'watch.limit': 3,
      }),
    );
    assert.deepEqual(s, {
      serverPath: '/opt/fp/bin/fp-lsp',
      reloadOnSave: true,
      hotLineThreshold: 2.5,
      lensRefreshRate: 1000,
      monitorInterval: 0.5,
      watch: { expr: 'args[0], return_obj', depth: 4, limit: 3 },
    });
  });

  it('replaces wrong types and out-of-range values by the defaults', () => {
    const s = readSettings(
      getter({
        serverPath: 42,
        reloadOnSave: 'yes',
        hotLineThreshold: 150,
        lensRefreshRate: 10,
        monitorInterval: 0,
        'watch.expr': null,
        'watch.depth': 9,
        'watch.limit': Number.NaN,
      }),
    );
    assert.deepEqual(s, DEFAULT_SETTINGS);
    assert.equal(readSettings(getter({ 'watch.depth': 2.4 })).watch.depth, 2);
  });

  it('agrees with the ranges package.json declares', () => {
    const field = (set: FpSettings, short: string): unknown =>
      short.startsWith('watch.') ? set.watch[short.slice(6) as keyof FpSettings['watch']] : set[short as keyof FpSettings];
    for (const [key, spec] of Object.entries(declared)) {
      const short = key.slice('fp.'.length);
      for (const [bound, outside] of [
        [spec.minimum, (spec.minimum ?? 0) - 1],
        [spec.maximum, (spec.maximum ?? 0) + 1],
      ]) {
        if (bound === undefined || outside === undefined) {
          continue;
        }
        assert.equal(field(readSettings(getter({ [short]: bound })), short), bound, `${key} = ${bound} is accepted`);
        assert.equal(field(readSettings(getter({ [short]: outside })), short), spec.default, `${key} = ${outside} is refused`);
      }
    }
  });
});

describe('server options', () => {
  it("sends every server setting under fp-lsp's names, but not the server path", () => {
    const s = readSettings(getter({ serverPath: '/x/fp-lsp', 'watch.limit': 5, hotLineThreshold: 2.5 }));
    assert.deepEqual(initializationOptions(s), {
      reloadOnSave: false,
      hotThreshold: 2.5,
      lensRefreshMs: 500,
      monitorInterval: 1,
      watch: { expr: SERVER_WATCH_EXPR, depth: 1, limit: 5 },
    });
    const e = initializationOptions(readSettings(getter({ 'watch.expr': 'args[0]' })));
    assert.deepEqual(e.watch, { expr: 'args[0]', depth: 1, limit: 100 });
  });

  it("sends an empty watch expression as fp-lsp's own default", () => {
    const source = readFileSync(path.join(extensionDir, '..', 'server', 'lsp', 'lifecycle.c'), 'utf8');
    const m = /snprintf\(s->watch_expr, sizeof s->watch_expr, "%s", "([^"]*)"\)/.exec(source);
    assert.equal(m?.[1], SERVER_WATCH_EXPR);
  });

  it('uses the names fp-lsp reads (server/lsp/lifecycle.c)', () => {
    const source = readFileSync(path.join(extensionDir, '..', 'server', 'lsp', 'lifecycle.c'), 'utf8');
    const body = source.slice(source.indexOf('lifecycle_settings_apply(const cJSON'));
    const applied = body.slice(0, body.indexOf('\n}\n'));
    const read = new Set([...applied.matchAll(/fp_json_\w+\((?:s|w), "(\w+)"/g)].map((m) => m[1]));
    const sent = initializationOptions(readSettings(getter({ 'watch.expr': 'x' })));
    const names = [...Object.keys(sent).filter((k) => k !== 'watch'), ...Object.keys(sent.watch as object)];
    for (const name of names) {
      assert.ok(read.has(name), `fp-lsp reads no setting "${name}" (it reads ${[...read].join(', ')})`);
    }
    assert.ok(read.has('watch'));
  });

  it('starts the resolved binary over stdio, in the workspace folder, with a copy of the environment', () => {
    const env = { PATH: '/usr/bin', HOME: '/root' };
    const exe = serverExecutable('/x/fp-lsp', '/srv/shop', env);
    assert.deepEqual(exe, { command: '/x/fp-lsp', args: [], options: { cwd: '/srv/shop', env } });
    assert.notEqual(exe.options.env, env);
    assert.equal('transport' in exe, false);
    assert.equal('cwd' in serverExecutable('/x/fp-lsp', undefined, env).options, false);
  });

  it('restarts the server only when its path changes', () => {
    assert.equal(needsRestart((s) => s === 'fp.serverPath'), true);
    assert.equal(needsRestart((s) => s === 'fp.watch'), false);
  });

  it('sends the settings again when one the server reads changes', () => {
    assert.equal(needsUpdate((s) => s === 'fp.watch'), true);
    assert.equal(needsUpdate((s) => s === 'fp.hotLineThreshold'), true);
    assert.equal(needsUpdate((s) => s === 'fp.serverPath'), false);
    assert.equal(needsUpdate((s) => s === 'fp.trace.server'), false);
  });
});
