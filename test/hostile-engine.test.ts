// The engine (a real forked worker) on every corpus file: each hostile job fails with a one-line
// error (the reader's reason where the header is bad) or succeeds, the worker never dies, and
// the next job on a good file succeeds.
import assert from 'node:assert/strict';
import {mkdtemp, rm} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {EngineClient} from '../source/engine/client.js';
import '../source/engine/jobs/decompose.js';
import '../source/engine/jobs/hash.js';
import '../source/engine/jobs/stats.js';
import {type CorpusEntry, pickleMarkerPath, rawControlPattern, writeHostileCorpus} from './fixtures/hostile-corpus.js';

let dir: string;
let entries: CorpusEntry[];
/** Jobs that failed with another reason than the reader gives for the file. */
const mismatches: string[] = [];

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-engine-corpus-'));
	entries = await writeHostileCorpus(dir, {huge: false});
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

async function settle<T>(promise: Promise<T>, label: string, ms = 60_000): Promise<{ok: true; value: T} | {ok: false; error: Error & {reason?: string}}> {
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${label}: no answer within ${ms} ms`)), ms);
	});
	try {
		return {ok: true, value: await Promise.race([promise, timeout])};
	} catch (error) {
		assert.ok(error instanceof Error, `${label}: rejected with a non-Error`);
		assert.doesNotMatch(error.message, /no answer within/, error.message);
		return {ok: false, error: error as Error & {reason?: string}};
	} finally {
		clearTimeout(timer);
	}
}

test('engine jobs on hostile files fail cleanly and the engine keeps serving', async t => {
	const good = entries.find(e => e.name === 'good-sd15-f32.safetensors')!;
	const client = EngineClient.start({device: 'cpu'});
	const started = performance.now();
	let jobs = 0;
	try {
		for (const entry of entries) {
			for (const kind of ['stats', 'decompose', 'hash'] as const) {
				const label = `${kind} ${JSON.stringify(entry.name)}`;
				const result = await settle(client.run(kind, {path: entry.file}).promise, label);
				jobs++;
				if (!result.ok) {
					const reason = result.error.reason ?? result.error.message;
					assert.doesNotMatch(reason, /engine stopped|worker (exited|crashed)/i, `${label}: the worker died`);
					assert.doesNotMatch(reason, /\n/, `${label}: one-line reason`);
					assert.doesNotMatch(reason, rawControlPattern, `${label}: terminal-safe reason`);
					if (entry.expect.error && !entry.expect.error.test(reason)) {
						mismatches.push(`${label}: ${reason}`);
					}
				} else if (entry.expect.error && entry.expect.inspect === 'error') {
					assert.fail(`${label}: succeeded on a file the reader refuses`);
				}
			}

			// The engine still serves a normal job right after.
			const next = await settle(client.run('stats', {path: good.file}).promise, `stats after ${entry.name}`);
			jobs++;
			assert.ok(next.ok, `stats on a good file after ${JSON.stringify(entry.name)}: ${next.ok ? '' : next.error.message}`);
			assert.equal(next.value.modules.length, good.expect.model!.moduleCount);
		}
	} finally {
		await client.close();
	}

	t.diagnostic(`${jobs} engine jobs over ${entries.length} corpus files in ${((performance.now() - started) / 1000).toFixed(1)} s`);
	await assert.rejects(import('node:fs/promises').then(async fs => fs.stat(pickleMarkerPath(dir))), {code: 'ENOENT'});
});

// Every job names the same reason the reader gives (symlink loop, permission denied...), not a
// generic "file not found".
test('engine job errors carry the reader\'s reason for each bad file', () => {
	assert.deepEqual(mismatches, []);
});
