import {test} from 'node:test';
import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {createHash} from 'node:crypto';
import {createReadStream, existsSync} from 'node:fs';
import {chmod, copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, truncate, utimes, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {
	exportFileName, exportMetadata, FileChangedError, importMetadata, MetadataEditError, parseMetadataValue, removeKey, saveMetadata, setKey,
} from '../source/lora/edit.js';
import {run as metaCommand} from '../source/commands/meta.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import {TargetExistsError, tempMarker} from '../source/lora/writer.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const realDir = path.resolve(repoRoot, '../shared/real-loras');
const missingReal = !existsSync(realDir);

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

type Spec = {name: string; shape: number[]; data: Buffer};

function randomF32(count: number, seed: number): Buffer {
	const out = Buffer.alloc(count * 4);
	let x = seed >>> 0 || 1;
	for (let i = 0; i < count; i++) {
		x ^= x << 13;
		x >>>= 0;
		x ^= x >>> 17;
		x ^= x << 5;
		x >>>= 0;
		out.writeFloatLE((x / 0xFF_FF_FF_FF) - 0.5, i * 4);
	}

	return out;
}

/** Header built independently of the code under test (padded to 8 like safetensors). */
function headerFor(specs: Spec[], metadata: Record<string, string> | undefined): Buffer {
	const object: Record<string, unknown> = {};
	if (metadata) {
		object['__metadata__'] = metadata;
	}

	let offset = 0;
	for (const spec of specs) {
		object[spec.name] = {dtype: 'F32', shape: spec.shape, data_offsets: [offset, offset + spec.data.length]};
		offset += spec.data.length;
	}

	let json = Buffer.from(JSON.stringify(object));
	if (json.length % 8 !== 0) {
		json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
	}

	const prefix = Buffer.alloc(8);
	prefix.writeBigUInt64LE(BigInt(json.length));
	return Buffer.concat([prefix, json]);
}

/** sd-scripts' hashes the plain way: serialise with ss_* metadata only, hash data / slice at 1 MiB. */
function referenceSshs(specs: Spec[], metadata: Record<string, string>): {model: string; legacy: string} {
	const ss = Object.fromEntries(Object.entries(metadata).filter(([key]) => key.startsWith('ss_')));
	const data = Buffer.concat(specs.map(s => s.data));
	const whole = Buffer.concat([headerFor(specs, ss), data]);
	return {model: sha(data), legacy: sha(whole.subarray(0x10_00_00, 0x11_00_00)).slice(0, 8)};
}

const specs: Spec[] = [
	['lora_te_x.alpha', []],
	['lora_te_x.lora_down.weight', [4, 768]],
	['lora_te_x.lora_up.weight', [768, 4]],
	['lora_unet_y.lora_down.weight', [16, 20_000]],
	['lora_unet_y.lora_up.weight', [320, 16]],
].map(([name, shape], index) => {
	const dims = shape as number[];
	return {name: name as string, shape: dims, data: randomF32(dims.reduce((a, b) => a * b, 1), index + 3)};
});
const dataBytes = Buffer.concat(specs.map(s => s.data));

async function withTemp(run: (directory: string) => Promise<void>): Promise<void> {
	const directory = await mkdtemp(path.join(os.tmpdir(), 'lorascope-edit-'));
	try {
		await run(directory);
	} finally {
		await rm(directory, {recursive: true, force: true});
	}
}

/** A kohya-like file with correct sshs hashes, mode 0640. */
async function makeFile(directory: string, name = 'a.safetensors', extra: Record<string, string> = {}): Promise<string> {
	const base = {ss_network_dim: '16', ss_network_alpha: '8.0', ss_output_name: 'a', ['modelspec.title']: 'A title', ...extra};
	const reference = referenceSshs(specs, base);
	const metadata = {...base, sshs_model_hash: reference.model, sshs_legacy_hash: reference.legacy};
	const file = path.join(directory, name);
	await writeFile(file, Buffer.concat([headerFor(specs, metadata), dataBytes]));
	await chmod(file, 0o640);
	return file;
}

async function dataAreaSha(file: string): Promise<string> {
	const bytes = await readFile(file);
	const length = Number(bytes.readBigUInt64LE(0));
	return sha(bytes.subarray(8 + length));
}

async function assertTensorsUnchanged(file: string): Promise<void> {
	assert.equal(await dataAreaSha(file), sha(dataBytes), 'data area byte-identical');
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	try {
		for (const spec of specs) {
			assert.ok((await reader.readRaw(spec.name)).equals(spec.data), spec.name);
		}
	} finally {
		await reader.close();
	}
}

test('set: header rewritten, tensors unchanged, sshs hashes recomputed, mode kept', async () => {
	await withTemp(async directory => {
		const file = await makeFile(directory);
		const header = await readHeader(file);
		assert.ok(header.sizeBytes > 0x11_00_00, 'fixture reaches past the legacy window');
		const edited = setKey(setKey(header.metadata, 'ss_output_name', 'renamed ✓'), 'note', 'line\u001B[31m');
		const result = await saveMetadata(file, edited, {expected: header});
		const after = await readHeader(file);
		assert.equal(after.metadata['ss_output_name'], 'renamed ✓');
		assert.equal(after.metadata['note'], 'line\u001B[31m');
		assert.equal(after.metadata['modelspec.title'], 'A title');
		await assertTensorsUnchanged(file);
		const reference = referenceSshs(specs, after.metadata);
		assert.equal(after.metadata['sshs_model_hash'], reference.model);
		assert.equal(after.metadata['sshs_legacy_hash'], reference.legacy);
		assert.notEqual(reference.legacy, header.metadata['sshs_legacy_hash'], 'an ss_ edit moves the legacy hash');
		assert.deepEqual(result.hashes, {modelHash: reference.model, legacyHash: reference.legacy});
		assert.equal(result.dataSha256, sha(dataBytes));
		assert.equal((await stat(file)).mode & 0o777, 0o640);
		assert.equal(result.backupPath, null);
		assert.deepEqual((await readdir(directory)).sort(), ['a.safetensors']);
	});
});

test('remove and import round-trips; export layout', async () => {
	await withTemp(async directory => {
		// (Removing modelspec.title below gives a header length whose first bytes look like a
		// pickle's 0x80 0x02 (640 bytes): the reader must still take it for safetensors.)
		const file = await makeFile(directory);
		const original = await readHeader(file);
		const exported = exportMetadata(original);
		assert.equal(exported.filename, 'a.safetensors');
		assert.equal(exported['ss_network_dim'], 16);
		assert.equal(exported['ss_network_alpha'], 8);
		assert.deepEqual(exported.__metadata__, {...original.metadata});
		assert.equal(exportFileName(file), 'a.json');

		let header = original;
		await saveMetadata(file, removeKey(header.metadata, 'modelspec.title'), {expected: header});
		header = await readHeader(file);
		assert.equal('modelspec.title' in header.metadata, false);
		assert.equal(header.metadata['ss_network_dim'], '16');
		await assertTensorsUnchanged(file);

		// Import the export written as text: exactly the original map comes back.
		await saveMetadata(file, importMetadata(JSON.stringify(exported)), {expected: header});
		header = await readHeader(file);
		assert.deepEqual({...header.metadata}, {...original.metadata});
		await assertTensorsUnchanged(file);
		assert.ok((await readFile(file)).equals(Buffer.concat([headerFor(specs, original.metadata), dataBytes])), 'whole file back to the original bytes');

		// Removing every key drops __metadata__ altogether.
		await saveMetadata(file, {}, {expected: header});
		header = await readHeader(file);
		assert.deepEqual({...header.metadata}, {});
		await assertTensorsUnchanged(file);
	});
});

test('hashes are only written when the file has them', async () => {
	await withTemp(async directory => {
		const file = path.join(directory, 'plain.safetensors');
		await writeFile(file, Buffer.concat([headerFor(specs, {format: 'pt'}), dataBytes]));
		const header = await readHeader(file);
		const result = await saveMetadata(file, setKey(header.metadata, 'ss_network_dim', '16'), {expected: header});
		assert.equal(result.hashes, null);
		const after = await readHeader(file);
		assert.deepEqual({...after.metadata}, {format: 'pt', ss_network_dim: '16'});
		await assertTensorsUnchanged(file);
	});
});

test('a file changed on disk after it was read is not overwritten', async () => {
	await withTemp(async directory => {
		const file = await makeFile(directory);
		const header = await readHeader(file);
		// Same size, new content and mtime.
		const handle = await open(file, 'r+');
		await handle.write(Buffer.from([1, 2, 3, 4]), 0, 4, header.sizeBytes - 4);
		await handle.close();
		await utimes(file, new Date(), new Date(Date.now() + 5000));
		const before = await readFile(file);
		await assert.rejects(saveMetadata(file, setKey(header.metadata, 'x', 'y'), {expected: header}), (error: unknown) => {
			assert.ok(error instanceof FileChangedError);
			assert.match(error.reason, /changed on disk since it was read \(modification time/);
			return true;
		});
		// Appended bytes: the size check names both sizes.
		const header2 = await readHeader(file);
		await writeFile(file, Buffer.from([0]), {flag: 'a'});
		await assert.rejects(saveMetadata(file, header2.metadata, {expected: header2}), /size \d+ → \d+ bytes/);
		assert.ok((await readFile(file)).subarray(0, before.length).equals(before));
		assert.deepEqual(await readdir(directory), ['a.safetensors']);
	});
});

test('backup, symlinks, save-as and a wrong known hash', async () => {
	await withTemp(async directory => {
		const file = await makeFile(directory);
		const originalBytes = await readFile(file);
		const header = await readHeader(file);
		const result = await saveMetadata(file, setKey(header.metadata, 'a', 'b'), {expected: header, backup: true});
		assert.equal(result.backupPath, `${file}.bak`);
		assert.ok((await readFile(`${file}.bak`)).equals(originalBytes));

		// Save through a symbolic link: the link stays, its target is edited.
		const link = path.join(directory, 'link.safetensors');
		await symlink(file, link);
		const viaLink = await readHeader(link);
		const linked = await saveMetadata(link, setKey(viaLink.metadata, 'c', 'd'), {expected: viaLink});
		assert.equal(linked.path, file);
		assert.equal((await readHeader(file)).metadata['c'], 'd');

		// Save as: refuses an existing target unless allowed; source untouched either way.
		const current = await readHeader(file);
		const currentBytes = await readFile(file);
		const other = path.join(directory, 'other.safetensors');
		await copyFile(file, other);
		await assert.rejects(saveMetadata(file, setKey(current.metadata, 'e', 'f'), {expected: current, outPath: other}), TargetExistsError);
		const fresh = path.join(directory, 'fresh.safetensors');
		await saveMetadata(file, setKey(current.metadata, 'e', 'f'), {expected: current, outPath: fresh});
		assert.equal((await readHeader(fresh)).metadata['e'], 'f');
		await assertTensorsUnchanged(fresh);
		assert.ok((await readFile(file)).equals(currentBytes));

		// A known data hash skips one read but is still checked against the bytes copied.
		const known = await saveMetadata(file, setKey(current.metadata, 'g', 'h'), {expected: current, knownDataSha256: sha(dataBytes)});
		const reference = referenceSshs(specs, known.metadata);
		assert.deepEqual(known.hashes, {modelHash: reference.model, legacyHash: reference.legacy});
		const latest = await readHeader(file);
		const latestBytes = await readFile(file);
		await assert.rejects(
			saveMetadata(file, setKey(latest.metadata, 'i', 'j'), {expected: latest, knownDataSha256: 'ab'.repeat(32)}),
			/hash differs/,
		);
		assert.ok((await readFile(file)).equals(latestBytes));
		const names = await readdir(directory);
		assert.equal(names.some(name => name.includes(tempMarker)), false, 'failed saves leave no temp file');
	});
});

test('metadata helpers', () => {
	assert.deepEqual(setKey({a: '1'}, 'b', '2'), {a: '1', b: '2'});
	assert.throws(() => setKey({}, '', 'x'), MetadataEditError);
	assert.deepEqual(removeKey({a: '1', b: '2'}, 'a'), {b: '2'});
	assert.deepEqual(removeKey({a: '1'}, 'zz'), {a: '1'});
	assert.deepEqual(importMetadata({a: 'x', b: 'y'}), {a: 'x', b: 'y'});
	assert.deepEqual(importMetadata({__metadata__: {a: 'x'}, a: 5, file: 'f'}), {a: 'x'});
	assert.throws(() => importMetadata({a: 5}), /not a string/);
	assert.throws(() => importMetadata('[1]'), /JSON object/);
	assert.throws(() => importMetadata('{oops'), /not valid JSON/);
	assert.equal(parseMetadataValue('None'), null);
	assert.equal(parseMetadataValue('False'), false);
	assert.equal(parseMetadataValue('1e-4'), 0.0001);
	assert.equal(parseMetadataValue('5386e8fb'), '5386e8fb');
	assert.equal(parseMetadataValue('12345678901234567890'), '12345678901234567890');
	assert.deepEqual(parseMetadataValue('{"conv_dim": "4"}'), {conv_dim: '4'});
	assert.equal(parseMetadataValue('{broken'), '{broken');
});

test('editing the real sd-scripts LoKr file keeps its tensors and its hashes valid', {skip: missingReal ? 'needs ../shared/real-loras' : false}, async () => {
	await withTemp(async directory => {
		const file = path.join(directory, 'lokr.safetensors');
		await copyFile(path.join(realDir, 'lycoris_lokr_sd15_kohya_dim4_smart_falcon.safetensors'), file);
		const originalData = await dataAreaSha(file);
		const header = await readHeader(file);
		await saveMetadata(file, setKey(header.metadata, 'ss_training_comment', 'edited'), {expected: header});
		const after = await readHeader(file);
		assert.equal(await dataAreaSha(file), originalData);
		assert.equal(after.metadata['sshs_model_hash'], '150ef207aad02214f69756f53c3fc56efacdf6c79e32dd76e5fcbcf6c6a5350f');
		assert.equal(after.metadata['sshs_legacy_hash'], 'e3b0c442');
		assert.equal(after.tensors.length, header.tensors.length);
	});
});

/** sha256 of a file without loading it whole. */
async function fileSha(file: string): Promise<string> {
	const hash = createHash('sha256');
	for await (const chunk of createReadStream(file, {highWaterMark: 8 * 1024 * 1024})) {
		hash.update(chunk as Buffer);
	}

	return hash.digest('hex');
}

test('a save killed mid-write leaves the original intact', async () => {
	await withTemp(async directory => {
		// 256 MiB of zero-filled F32 tensors (sparse, so it is written instantly), plus sshs keys so
		// the save also hashes first.
		const file = path.join(directory, 'big.safetensors');
		const rows = 64;
		const cols = 1024 * 1024;
		const half = (rows / 2) * cols * 4;
		const metadata = {ss_network_dim: '64', sshs_model_hash: '0'.repeat(64), sshs_legacy_hash: '00000000'};
		const object = {
			__metadata__: metadata,
			['a.weight']: {dtype: 'F32', shape: [rows / 2, cols], data_offsets: [0, half]},
			['b.weight']: {dtype: 'F32', shape: [rows / 2, cols], data_offsets: [half, 2 * half]},
		};
		let json = Buffer.from(JSON.stringify(object));
		json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
		const prefix = Buffer.alloc(8);
		prefix.writeBigUInt64LE(BigInt(json.length));
		await writeFile(file, Buffer.concat([prefix, json, Buffer.from('tensor bytes start here')]));
		await truncate(file, 8 + json.length + 2 * half);
		const before = await fileSha(file);

		// The child saves with 1 MiB chunks and pauses briefly per chunk while writing, so the kill
		// reliably lands mid-write; it reports progress on stdout.
		const script = path.join(directory, 'child.mts');
		await writeFile(script, [
			`import {saveMetadata} from ${JSON.stringify(path.join(repoRoot, 'source/lora/edit.ts'))};`,
			`import {readHeader} from ${JSON.stringify(path.join(repoRoot, 'source/lora/safetensors.ts'))};`,
			'const file = process.argv[2];',
			'const header = await readHeader(file);',
			'const pause = new Int32Array(new SharedArrayBuffer(4));',
			'await saveMetadata(file, {...header.metadata, ss_network_dim: "32"}, {expected: header, chunkBytes: 1 << 20, onProgress(p) {',
			'  if (p.label === "writing") { process.stdout.write(`${p.done}/${p.total}\\n`); Atomics.wait(pause, 0, 0, 2); }',
			'}});',
			'process.stdout.write("finished\\n");',
		].join('\n'));
		const child = spawn(process.execPath, ['--import', 'tsx', script, file], {cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe']});
		let stderr = '';
		child.stderr.on('data', (chunk: Buffer) => {
			stderr += chunk.toString();
		});
		const killedAt = await new Promise<string>((resolve, reject) => {
			let buffered = '';
			child.stdout.on('data', (chunk: Buffer) => {
				buffered += chunk.toString();
				const lines = buffered.split('\n');
				buffered = lines.pop() ?? '';
				for (const line of lines) {
					const match = /^(\d+)\/(\d+)$/.exec(line);
					// Progress spans hash, write and verify passes: half of it is the middle of the write.
					if (match && Number(match[1]) > Number(match[2]) * 0.5) {
						child.kill('SIGKILL');
						resolve(line);
						return;
					}

					if (line === 'finished') {
						reject(new Error('child finished before it could be killed'));
					}
				}
			});
			child.on('exit', code => {
				if (code !== null) {
					reject(new Error(`child exited with ${code}: ${stderr.slice(0, 500)}`));
				}
			});
		});
		await new Promise(resolve => {
			if (child.exitCode !== null || child.signalCode !== null) {
				resolve(undefined);
			} else {
				child.on('exit', resolve);
			}
		});
		assert.equal(child.signalCode, 'SIGKILL', killedAt);
		assert.equal(await fileSha(file), before, 'original byte-identical');
		const names = await readdir(directory);
		const others = names.filter(name => name !== 'big.safetensors' && name !== 'child.mts');
		assert.ok(others.length > 0, 'the killed save left its temp file (it was mid-write)');
		for (const name of others) {
			assert.ok(name.includes(tempMarker) && name.startsWith('.big.safetensors'), name);
		}
	});
});

async function capture(run: () => Promise<number>): Promise<{code: number; stdout: string; stderr: string}> {
	const out: string[] = [];
	const err: string[] = [];
	const originalOut = process.stdout.write.bind(process.stdout);
	const originalErr = process.stderr.write.bind(process.stderr);
	process.stdout.write = ((chunk: string | Uint8Array) => {
		out.push(String(chunk));
		return true;
	}) as typeof process.stdout.write;
	process.stderr.write = ((chunk: string | Uint8Array) => {
		err.push(String(chunk));
		return true;
	}) as typeof process.stderr.write;
	try {
		return {code: await run(), stdout: out.join(''), stderr: err.join('')};
	} finally {
		process.stdout.write = originalOut;
		process.stderr.write = originalErr;
	}
}

test('lorascope meta get/set/rm/export/import', async () => {
	await withTemp(async directory => {
		const file = await makeFile(directory, 'cli.safetensors', {note: 'evil \u001B]0;title\u0007 \u009B31m text'});
		const originalBytes = await readFile(file);

		const all = await capture(async () => metaCommand(['get', file]));
		assert.equal(all.code, 0);
		assert.match(all.stdout, /ss_network_dim\s+16/);
		assert.equal(/[\u001B\u0007\u009B]/.test(all.stdout), false, 'values are sanitised');
		const one = await capture(async () => metaCommand(['get', file, 'ss_network_alpha']));
		assert.equal(one.stdout, '8.0\n');
		const json = await capture(async () => metaCommand(['get', file, '--json']));
		assert.equal(/[\u001B\u0007\u009B]/.test(json.stdout), false);
		assert.equal((JSON.parse(json.stdout) as Record<string, string>)['note'], 'evil \u001B]0;title\u0007 \u009B31m text', 'JSON keeps the exact value, escaped');
		assert.equal((await capture(async () => metaCommand(['get', file, 'missing']))).code, 1);

		const set = await capture(async () => metaCommand(['set', file, '--key', 'ss_output_name', '--value', 'cli', '--backup']));
		assert.equal(set.code, 0, set.stderr);
		assert.match(set.stdout, /sshs hashes recomputed/);
		assert.ok((await readFile(`${file}.bak`)).equals(originalBytes));
		let header = await readHeader(file);
		assert.equal(header.metadata['ss_output_name'], 'cli');
		assert.equal(header.metadata['sshs_legacy_hash'], referenceSshs(specs, header.metadata).legacy);
		await assertTensorsUnchanged(file);

		const removed = await capture(async () => metaCommand(['rm', file, '--key', 'note']));
		assert.equal(removed.code, 0, removed.stderr);
		header = await readHeader(file);
		assert.equal('note' in header.metadata, false);
		const before = await readFile(file);
		const absent = await capture(async () => metaCommand(['rm', file, '--key', 'note']));
		assert.equal(absent.code, 1);
		assert.ok((await readFile(file)).equals(before), 'removing an absent key changes nothing');

		const exportDir = path.join(directory, 'meta');
		const exported = await capture(async () => metaCommand(['export', `${file}.bak`, file, '-o', exportDir]));
		assert.equal(exported.code, 0, exported.stderr);
		const names = (await readdir(exportDir)).sort();
		assert.deepEqual(names, ['cli.json', 'cli.safetensors.json']);
		const layout = JSON.parse(await readFile(path.join(exportDir, 'cli.safetensors.json'), 'utf8')) as Record<string, unknown>;
		assert.equal(layout['filename'], 'cli.safetensors.bak');
		assert.equal(layout['ss_network_dim'], 16);

		// A folder is scanned recursively; a broken file in it is reported and the rest exported.
		const nested = path.join(directory, 'nested', 'deeper');
		await mkdir(nested, {recursive: true});
		await copyFile(file, path.join(nested, 'copy.safetensors'));
		await writeFile(path.join(directory, 'nested', 'broken.safetensors'), 'not a lora');
		const folderExport = path.join(directory, 'meta-folder');
		const fromFolder = await capture(async () => metaCommand(['export', path.join(directory, 'nested'), '-o', folderExport]));
		assert.equal(fromFolder.code, 1, 'the broken file fails, the rest is exported');
		assert.match(fromFolder.stderr, /broken\.safetensors/);
		assert.deepEqual((await readdir(folderExport)).sort(), ['copy.json']);
		const copied = JSON.parse(await readFile(path.join(folderExport, 'copy.json'), 'utf8')) as Record<string, unknown>;
		assert.equal(copied['ss_network_dim'], 16);

		// Import the backup's export: the original metadata, tensors unchanged, hashes recomputed.
		const imported = await capture(async () => metaCommand(['import', file, path.join(exportDir, 'cli.safetensors.json')]));
		assert.equal(imported.code, 0, imported.stderr);
		assert.ok((await readFile(file)).equals(originalBytes), 'back to the original bytes');

		assert.equal((await capture(async () => metaCommand(['import', file, path.join(directory, 'nope.json')]))).code, 1);
		assert.equal((await capture(async () => metaCommand([]))).code, 2);
		assert.equal((await capture(async () => metaCommand(['set', file, '--key', 'a']))).code, 2);
		assert.equal((await capture(async () => metaCommand(['frobnicate']))).code, 2);
		const missingFile = await capture(async () => metaCommand(['get', path.join(directory, 'none.safetensors')]));
		assert.equal(missingFile.code, 1);
		assert.match(missingFile.stderr, /none\.safetensors: file not found/);
	});
});
