// `lorascope inspect` as a child process on the whole hostile corpus: exit code 1, one object per
// file, each bad file with its one-line error, good files still correct (against references
// computed by the corpus generator), no stack traces, nothing unpickled, bounded time and memory.
import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {mkdtemp, readFile, rm, stat} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {after, before, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {type CorpusEntry, pickleMarkerPath, rawControlPattern, writeHostileCorpus} from './fixtures/hostile-corpus.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const probe = path.join(repoRoot, 'test/fixtures/max-rss-probe.ts');

let dir: string;
let smallDir: string;
let entries: CorpusEntry[];
let smallEntries: CorpusEntry[];

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-inspect-corpus-'));
	smallDir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-inspect-small-'));
	entries = await writeHostileCorpus(dir);
	smallEntries = await writeHostileCorpus(smallDir, {huge: false});
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
	await rm(smallDir, {recursive: true, force: true});
});

type RunResult = {code: number | null; stdout: string; stderr: string; seconds: number; maxRss: number | undefined};

async function inspect(args: string[], timeoutMs = 300_000): Promise<RunResult> {
	const rssFile = path.join(os.tmpdir(), `lorascope-rss-${process.pid}-${Date.now()}`);
	const started = performance.now();
	const child = spawn(process.execPath, ['--import', 'tsx', '--import', probe, 'source/cli.tsx', 'inspect', ...args], {
		cwd: repoRoot,
		env: {...process.env, LORASCOPE_MAX_RSS_FILE: rssFile, NO_COLOR: '1'},
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	const stdout: Buffer[] = [];
	const stderr: Buffer[] = [];
	child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
	child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
	const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
	const code = await new Promise<number | null>(resolve => {
		child.on('close', resolve);
	});
	clearTimeout(timer);
	const maxRss = await readFile(rssFile, 'utf8').then(Number, () => undefined);
	await rm(rssFile, {force: true});
	return {code, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8'), seconds: (performance.now() - started) / 1000, maxRss};
}

const stackTrace = /\n\s+at .+(:\d+:\d+|\(native\)|\(node:)/;

type InspectObject = {
	path: string;
	error: string | null;
	keyStyle?: string;
	arch?: string;
	networkType?: string;
	rank?: number | null;
	alpha?: number | null;
	moduleCount?: number;
	nonFiniteValues?: number;
	modules?: Array<{name: string; norm: number | null}>;
};

test('inspect --json -w on the whole corpus', async t => {
	const result = await inspect(['--json', '-w', dir]);
	const mb = (result.maxRss ?? 0) / 1024 / 1024;
	t.diagnostic(`${entries.length} corpus files: exit ${result.code}, ${result.seconds.toFixed(1)} s, max RSS ${mb.toFixed(0)} MB, stdout ${(result.stdout.length / 1e6).toFixed(1)} MB`);
	assert.equal(result.code, 1, `exit code (stderr: ${result.stderr.slice(0, 500)})`);
	assert.doesNotMatch(result.stderr, stackTrace, 'no stack trace on stderr');
	assert.doesNotMatch(result.stderr, /Error:|TypeError|RangeError/, 'no exception on stderr');
	assert.doesNotMatch(result.stdout, rawControlPattern, 'no raw control character on stdout');

	const objects = JSON.parse(result.stdout) as InspectObject[];
	assert.ok(Array.isArray(objects));
	const byPath = new Map<string, InspectObject>();
	for (const object of objects) {
		assert.ok(!byPath.has(object.path), `listed once: ${JSON.stringify(object.path)}`);
		byPath.set(object.path, object);
	}

	const known = new Set(entries.map(e => e.file));
	for (const object of objects) {
		assert.ok(known.has(object.path), `object for a corpus file: ${JSON.stringify(object.path)}`);
	}

	for (const entry of entries) {
		const label = `${JSON.stringify(entry.name)} (${entry.expect.behaviour})`;
		const object = byPath.get(entry.file);
		if (entry.expect.listed === 'yes') {
			assert.ok(object, `${label} is listed`);
		} else if (entry.expect.listed === 'no') {
			assert.equal(object, undefined, `${label} is not listed`);
		}

		if (!object) {
			continue;
		}

		if (object.error !== null) {
			assert.equal(typeof object.error, 'string');
			assert.doesNotMatch(object.error, /\n/, `${label}: one-line error`);
			assert.doesNotMatch(object.error, rawControlPattern, `${label}: terminal-safe error`);
			assert.ok(object.error.length <= 300, `${label}: short error`);
		}

		if (entry.expect.inspect === 'ok') {
			assert.equal(object.error, null, `${label}: no error`);
		} else if (entry.expect.inspect === 'error') {
			assert.ok(object.error, `${label}: reported as an error`);
		}

		if (entry.expect.error && object.error !== null) {
			assert.match(object.error, entry.expect.error, label);
		}

		if (object.error !== null) {
			continue;
		}

		for (const [key, value] of Object.entries(entry.expect.model ?? {})) {
			assert.equal(object[key as keyof InspectObject], value, `${label}: ${key}`);
		}

		for (const [name, norm] of Object.entries(entry.expect.norms ?? {})) {
			const module = object.modules?.find(m => m.name === name);
			assert.ok(module, `${label}: module ${name}`);
			assert.ok(module.norm !== null && Math.abs(module.norm - norm) <= 1e-5 * norm, `${label}: ‖ΔW‖ of ${name} = ${module.norm}, reference ${norm}`);
		}

		if (entry.expect.nonFinite) {
			assert.ok((object.nonFiniteValues ?? 0) > 0, `${label}: NaN/Inf counted`);
		}
	}

	await assert.rejects(stat(pickleMarkerPath(dir)), {code: 'ENOENT'}, 'nothing was unpickled');
	assert.ok(result.seconds < 180, `bounded time: ${result.seconds} s`);
	if (result.maxRss !== undefined) {
		// Measured 1.66 GB (2 cores, Node 20): results of every file are kept until the end.
		assert.ok(mb < 2048, `bounded memory: ${mb.toFixed(0)} MB`);
	}
});

test('inspect on a 200 MB header does not allocate it', async t => {
	const result = await inspect(['--json', path.join(dir, 'header-200mb.safetensors')]);
	const mb = (result.maxRss ?? 0) / 1024 / 1024;
	t.diagnostic(`200 MB header: ${result.seconds.toFixed(1)} s, max RSS ${mb.toFixed(0)} MB`);
	assert.equal(result.code, 1);
	const [object] = JSON.parse(result.stdout) as InspectObject[];
	assert.match(object!.error ?? '', /exceeds the 100 MB limit/);
	if (result.maxRss !== undefined) {
		assert.ok(mb < 200, `max RSS ${mb.toFixed(0)} MB`);
	}
});

test('inspect text output (-w -t -d --hash) on the corpus: no raw control characters, no stack traces', async t => {
	const result = await inspect(['-w', '-t', '-d', '--hash', smallDir]);
	t.diagnostic(`${smallEntries.length} files (text, with hashes): exit ${result.code}, ${result.seconds.toFixed(1)} s`);
	assert.equal(result.code, 1, result.stderr.slice(0, 500));
	assert.doesNotMatch(result.stdout, rawControlPattern, 'stdout is terminal-safe');
	assert.doesNotMatch(result.stderr, rawControlPattern, 'stderr is terminal-safe');
	assert.doesNotMatch(result.stderr, stackTrace);
	assert.doesNotMatch(result.stdout, stackTrace);
	for (const sequence of ['PWNED-TITLE', 'C1-TITLE']) {
		// The text may be shown (escaped), but never as a live sequence.
		assert.doesNotMatch(result.stdout, new RegExp(`\u001B\\]\\d;${sequence}`));
	}

	await assert.rejects(stat(pickleMarkerPath(smallDir)), {code: 'ENOENT'});
});
