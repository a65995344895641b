// The hostile corpus through the reader: every file yields exactly its expected one-line
// reason (or reads), nothing is ever unpickled, and the corpus itself is deterministic.
import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {lstat, mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {LoraFileError, readHeader} from '../source/lora/safetensors.js';
import {type CorpusClass, type CorpusEntry, pickleMarkerPath, rawControlPattern, writeHostileCorpus} from './fixtures/hostile-corpus.js';
import {picklePayloadProtocol0, picklePayloadProtocol2, torchZipPayload} from './fixtures/pickle-payload.js';

let dir: string;
let entries: CorpusEntry[];

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-corpus-'));
	entries = await writeHostileCorpus(dir);
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

const allClasses: readonly CorpusClass[] = [
	'good', 'hostile-name', 'truncated', 'header-size', 'header-encoding', 'header-json', 'duplicate-keys', 'many-entries',
	'deep-nesting', 'dtype', 'shape', 'offsets', 'zero-size', 'rank-0', 'non-finite', 'orphan-factor', 'alpha', 'key-dialects',
	'metadata-type', 'terminal-injection', 'huge-metadata', 'bad-json-metadata', 'lfs-pointer', 'pickle', 'empty', 'directory',
	'symlink', 'unreadable', 'special-file',
];

test('the corpus has at least 60 files and covers every class', t => {
	assert.ok(entries.length >= 60, `${entries.length} files`);
	const counts = new Map<string, number>();
	for (const entry of entries) {
		counts.set(entry.class, (counts.get(entry.class) ?? 0) + 1);
	}

	for (const cls of allClasses) {
		// The FIFO needs mkfifo; every other class must be there.
		if (cls !== 'special-file') {
			assert.ok(counts.has(cls), `class ${cls} present`);
		}
	}

	t.diagnostic(`${entries.length} files: ${[...counts].map(([c, n]) => `${c} ${n}`).join(', ')}`);
	assert.equal(new Set(entries.map(e => e.name)).size, entries.length, 'names are unique');
});

test('readHeader on every corpus file gives its expected one-line result', async t => {
	const started = performance.now();
	for (const entry of entries) {
		const label = JSON.stringify(entry.name);
		let reason: string | null = null;
		try {
			await readHeader(entry.file);
		} catch (error) {
			assert.ok(error instanceof LoraFileError, `${label}: threw ${String(error)} instead of a LoraFileError`);
			reason = error.reason;
			assert.doesNotMatch(error.message, rawControlPattern, `${label}: message is terminal-safe`);
		}

		if (entry.expect.error === null) {
			assert.equal(reason, null, `${label}: ${entry.expect.behaviour}`);
		} else {
			assert.ok(reason !== null, `${label} was accepted (${entry.expect.behaviour})`);
			assert.match(reason, entry.expect.error, label);
			assert.doesNotMatch(reason, rawControlPattern, `${label}: reason is terminal-safe`);
			assert.ok(reason.length <= 200, `${label}: reason is short (${reason.length})`);
		}
	}

	const seconds = (performance.now() - started) / 1000;
	t.diagnostic(`readHeader over ${entries.length} files: ${seconds.toFixed(2)} s`);
	assert.ok(seconds < 60, `bounded time (${seconds} s)`);
	await assert.rejects(stat(pickleMarkerPath(dir)), {code: 'ENOENT'}, 'no pickle was ever unpickled');
});

test('the corpus is byte-for-byte deterministic', async () => {
	const other = await mkdtemp(path.join(os.tmpdir(), 'lorascope-corpus-again-'));
	try {
		const again = await writeHostileCorpus(other, {huge: false});
		const byName = new Map(entries.map(e => [e.name, e]));
		for (const entry of again) {
			const info = await lstat(entry.file);
			// Pickles embed the marker's absolute path, which differs per folder.
			if (!info.isFile() || entry.class === 'unreadable' || entry.class === 'pickle') {
				continue;
			}

			const original = byName.get(entry.name);
			assert.ok(original, entry.name);
			const digest = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');
			assert.equal(await digest(entry.file), await digest(original.file), entry.name);
		}
	} finally {
		await rm(other, {recursive: true, force: true});
	}
});

// Proves the never-unpickled assertions can fail: Python really runs these payloads.
const python = spawnSync('python3', ['-c', 'print(1)'], {encoding: 'utf8'}).status === 0 ? 'python3' : undefined;
test('the pickle payloads really would run code if unpickled', {skip: python ? false : 'needs python3 to unpickle the payloads'}, async () => {
	const scratch = await mkdtemp(path.join(os.tmpdir(), 'lorascope-pickle-proof-'));
	try {
		const cases: Array<[string, Buffer, string]> = [
			['p2', picklePayloadProtocol2(path.join(scratch, 'p2.marker')), 'import pickle,sys; pickle.load(open(sys.argv[1],"rb"))'],
			['p0', picklePayloadProtocol0(path.join(scratch, 'p0.marker')), 'import pickle,sys; pickle.load(open(sys.argv[1],"rb"))'],
			['zip', torchZipPayload(path.join(scratch, 'zip.marker')), 'import pickle,sys,zipfile; pickle.loads(zipfile.ZipFile(sys.argv[1]).read("archive/data.pkl"))'],
		];
		for (const [name, payload, code] of cases) {
			const file = path.join(scratch, `${name}.pkl`);
			await writeFile(file, payload);
			const result = spawnSync(python!, ['-c', code, file], {encoding: 'utf8'});
			assert.equal(result.status, 0, result.stderr);
			assert.equal(await readFile(path.join(scratch, `${name}.marker`), 'utf8'), 'unpickled', `${name} payload ran`);
		}
	} finally {
		await rm(scratch, {recursive: true, force: true});
	}
});
