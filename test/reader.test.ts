import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {chmod, mkdir, mkdtemp, rm, symlink, truncate, writeFile} from 'node:fs/promises';
import type {FileHandle} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {after, before, test} from 'node:test';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {
	LoraFileError,
	TensorReader,
	errorReason,
	maxHeaderBytes,
	parseHeaderBytes,
	readHeader,
	readHeaderFromHandle,
	sniffFileKind,
} from '../source/lora/safetensors.js';
import {picklePayloadProtocol2, torchZipPayload} from './fixtures/pickle-payload.js';
import {f16Bytes, goodLora, halfFromNumber, halfToNumber, rawFile, safetensorsFile} from './fixtures/safetensors-builder.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let dir: string;

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-reader-'));
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

let counter = 0;
async function fileWith(bytes: Uint8Array, name?: string): Promise<string> {
	const file = path.join(dir, name ?? `f${counter++}.safetensors`);
	await writeFile(file, bytes);
	return file;
}

async function reasonOf(file: string): Promise<string> {
	try {
		await readHeader(file);
	} catch (error) {
		assert.ok(error instanceof LoraFileError, `expected LoraFileError, got ${String(error)}`);
		assert.equal(error.filePath, file);
		assert.doesNotMatch(error.reason, /\n/, 'reason is one line');
		return error.reason;
	}

	return assert.fail(`${path.basename(file)} was accepted`);
}

async function rejects(bytes: Uint8Array, reason: RegExp): Promise<void> {
	assert.match(await reasonOf(await fileWith(bytes)), reason);
}

const one = '"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';

test('a valid file: header fields, tensor order, metadata and values', async () => {
	const lora = goodLora(7);
	const file = await fileWith(safetensorsFile(lora.tensors, lora.metadata));
	const header = await readHeader(file);
	assert.equal(header.tensors.length, lora.tensors.length);
	assert.deepEqual({...header.metadata}, lora.metadata);
	assert.equal(Object.getPrototypeOf(header.metadata), null, 'metadata map has no prototype');
	let offset = 0;
	for (const [index, tensor] of header.tensors.entries()) {
		const source = lora.tensors[index]!;
		assert.equal(tensor.name, source.name);
		assert.deepEqual(tensor.shape, source.shape);
		assert.equal(tensor.begin, offset);
		offset += source.data.byteLength;
		assert.equal(tensor.end, offset);
		assert.equal(header.byName.get(source.name), tensor);
	}

	assert.equal(header.dataOffset, 8 + header.headerLength);
	const reader = await TensorReader.open(header);
	try {
		const first = lora.tensors[0]!;
		assert.deepEqual(await reader.readRaw(first.name), Buffer.from(first.data));
		const values = await reader.read(first.name);
		const expected = new Float32Array(first.data.buffer, first.data.byteOffset, first.data.byteLength / 4);
		assert.deepEqual(values, expected);
		await assert.rejects(reader.read('no such tensor'), /no tensor named "no such tensor"/);
		await assert.rejects(reader.readDataRange(-1, 4), LoraFileError);
		await assert.rejects(reader.readDataRange(0, offset + 1), /outside the data area/);
		assert.equal((await reader.readDataRange(0, 16)).length, 16);
	} finally {
		await reader.close();
	}
});

test('readMany: the bytes of every tensor asked for, nearby tensors in one read, far ones apart', async () => {
	const lora = goodLora(11, {dtype: 'F16'});
	const file = await fileWith(safetensorsFile(lora.tensors, lora.metadata));
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	const ranges: Array<[number, number]> = [];
	const plain = reader.readDataRange.bind(reader);
	reader.readDataRange = async (begin, length, into) => {
		ranges.push([begin, length]);
		return plain(begin, length, into);
	};

	try {
		const alphas = lora.tensors.filter(t => t.name.endsWith('.alpha')).map(t => t.name);
		const everything = lora.tensors.map(t => t.name).reverse();
		for (const [names, gap] of [[alphas, 128 * 1024], [alphas, 0], [everything, 1024], [[], 0]] as const) {
			ranges.length = 0;
			const got = await reader.readMany(names, gap);
			assert.equal(got.size, names.length);
			for (const name of names) {
				const source = lora.tensors.find(t => t.name === name)!;
				assert.deepEqual(got.get(name), Buffer.from(source.data), name);
			}

			// Each read covers whole tensors, and no two reads overlap or leave a gap over `gap`.
			let previousEnd = -1;
			for (const [begin, length] of ranges) {
				assert.ok(begin >= previousEnd, 'reads in offset order, never overlapping');
				previousEnd = begin + length;
			}

			if (gap === 0 && names === alphas) {
				assert.equal(ranges.length, alphas.length, 'alphas with weights between them: one read each');
			}
		}

		// The 4 alphas of the small fixture sit within 128 KiB of each other: one read.
		ranges.length = 0;
		await reader.readMany(alphas);
		assert.equal(ranges.length, 1);
		await assert.rejects(reader.readMany(['no such tensor']), /no tensor named/);
	} finally {
		await reader.close();
	}
});

test('F16 tensors decode to the values written', async () => {
	const values = [0, 1, -2.5, 0.000_123, 65_504, -0.333];
	const file = await fileWith(safetensorsFile([{name: 'w', dtype: 'F16', shape: [2, 3], data: f16Bytes(values)}]));
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	const decoded = await reader.read('w');
	await reader.close();
	assert.deepEqual([...decoded], values.map(v => halfToNumber(halfFromNumber(v))));
});

test('header length: 0, 1, 7-byte file, beyond the file, 2^64−1, over the 100 MB limit', async () => {
	const data = Buffer.alloc(16);
	await rejects(rawFile('{}', data, {declaredLength: 0n}), /^header length 0 is too small$/);
	await rejects(rawFile('{}', data, {declaredLength: 1n}), /^header length 1 is too small$/);
	await rejects(Buffer.from([1, 0, 0, 0, 0, 0, 0]), /^file is 7 bytes, too short for a safetensors header$/);
	await rejects(rawFile('[1,2,3]', data), /^header is JSON array, not an object$/); // Header length 7
	await rejects(rawFile('{}', data, {declaredLength: 100n}), /^header length 100 is larger than the file \(26 bytes\)$/);
	await rejects(rawFile('{}', data, {declaredLength: (2n ** 64n) - 1n}), /^header length 18446744073709551615 exceeds the 100 MB limit$/);
	await rejects(rawFile('{}', data, {declaredLength: BigInt(maxHeaderBytes + 1)}), /exceeds the 100 MB limit/);
	assert.match(await reasonOf(await fileWith(new Uint8Array())), /^empty file$/);
});

test('a 200 MB header is refused without allocating it', async () => {
	const file = path.join(dir, 'huge-header.safetensors');
	const prefix = Buffer.alloc(8);
	prefix.writeBigUInt64LE(200n * 1024n * 1024n);
	await writeFile(file, prefix);
	await truncate(file, 8 + (200 * 1024 * 1024)); // Sparse: no disk used
	const before = process.memoryUsage();
	assert.match(await reasonOf(file), /^header length 209715200 exceeds the 100 MB limit$/);
	const grown = process.memoryUsage().arrayBuffers - before.arrayBuffers;
	assert.ok(grown < 16 * 1024 * 1024, `array buffers grew by ${grown} bytes`);
});

test('encoding and JSON: non-UTF-8, invalid JSON, non-object JSON, no echo of file content', async () => {
	await rejects(rawFile(Buffer.concat([Buffer.from('{"'), Buffer.from([0xff]), Buffer.from(`":1,${one}}`)]), Buffer.alloc(4)), /^header is not valid UTF-8$/);
	await rejects(rawFile(Buffer.concat([Buffer.from('{"__metadata__":{"a":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(`"},${one}}`)]), Buffer.alloc(4)), /^header is not valid UTF-8$/);
	await rejects(rawFile('{"t":{"dtype":"F32"', Buffer.alloc(4)), /^header is not valid JSON \(unexpected end of header\)$/);
	await rejects(rawFile(`{${one},}`, Buffer.alloc(4)), /^header is not valid JSON \(expected a key at byte \d+\)$/);
	await rejects(rawFile(`{${one}} {}`, Buffer.alloc(4)), /^header is not valid JSON \(unexpected data after the header object at byte \d+\)$/);
	await rejects(rawFile('{"t":tru}', Buffer.alloc(4)), /^header is not valid JSON \(unexpected character at byte 5\)$/);
	await rejects(rawFile('{"t":"\\x"}', Buffer.alloc(4)), /^header is not valid JSON \(bad escape at byte 7\)$/);
	await rejects(rawFile('{"t":"\\u12G4"}', Buffer.alloc(4)), /^header is not valid JSON \(bad \\u escape at byte \d+\)$/);
	await rejects(rawFile('{"t":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}', Buffer.alloc(4)), /^header is not valid JSON \(expected ',' or '\]' at byte 30\)$/);
	await rejects(rawFile('{"t":-}', Buffer.alloc(4)), /^header is not valid JSON \(bad number at byte 6\)$/);
	await rejects(rawFile('[{"a":1}]', Buffer.alloc(4)), /^header is JSON array, not an object$/);
	await rejects(rawFile('12345', Buffer.alloc(4)), /^header is JSON number, not an object$/);
	await rejects(rawFile('"text"', Buffer.alloc(4)), /^header is JSON string, not an object$/);
	await rejects(rawFile('null', Buffer.alloc(4)), /^header is JSON null, not an object$/);
	await rejects(rawFile('   ', Buffer.alloc(4)), /^header is blank$/);
	// A raw escape sequence in the header: JSON.parse would quote it back in its message.
	const reason = await reasonOf(await fileWith(rawFile('{"\u001B]0;TITLE\u0007":1}', Buffer.alloc(4))));
	assert.equal(reason, 'header is not valid JSON (control character in a string at byte 2)');
});

test('duplicate keys at every level are refused (JSON.parse would keep the last silently)', async () => {
	await rejects(rawFile(`{${one},${one.replace('[0,4]', '[4,8]')}}`, Buffer.alloc(8)), /^header has duplicate tensor names$/);
	await rejects(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, Buffer.alloc(8)), /^header has duplicate tensor names$/);
	await rejects(rawFile(`{"__metadata__":{},${one},"__metadata__":{}}`, Buffer.alloc(4)), /^header has duplicate __metadata__ entries$/);
	await rejects(rawFile(`{"__metadata__":{"k":"1","k":"2"},${one}}`, Buffer.alloc(4)), /^header has a duplicate key in __metadata__$/);
	await rejects(rawFile('{"t":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}', Buffer.alloc(4)), /^header has a duplicate key inside a tensor entry$/);
	await rejects(rawFile('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":{"y":1,"y":2}}}', Buffer.alloc(4)), /^header has a duplicate key$/);
});

test('tensor entries: dtype, shape, offsets, byte length, overlaps', async () => {
	const entry = (fields: string, data = 4): Buffer => rawFile(`{"t":{${fields}}}`, Buffer.alloc(data));
	await rejects(entry('"dtype":"F4","shape":[1],"data_offsets":[0,4]'), /^tensor #1: unknown dtype "F4"$/);
	await rejects(entry('"dtype":"\\u009b2J","shape":[1],"data_offsets":[0,4]'), /^tensor #1: unknown dtype "\\x9b2J"$/);
	await rejects(entry('"dtype":["F32"],"shape":[1],"data_offsets":[0,4]'), /^tensor #1: unknown dtype \(a JSON array\)$/);
	await rejects(entry('"shape":[1],"data_offsets":[0,4]'), /^tensor #1: dtype is missing$/);
	await rejects(entry('"dtype":"F32","shape":[-1],"data_offsets":[0,4]'), /^tensor #1: shape is not a list of non-negative integers$/);
	await rejects(entry('"dtype":"F32","shape":[0.5],"data_offsets":[0,4]'), /^tensor #1: shape is not a list of non-negative integers$/);
	await rejects(entry('"dtype":"F32","shape":[1.0],"data_offsets":[0,4]'), /^tensor #1: shape is not a list of non-negative integers$/);
	await rejects(entry('"dtype":"F32","shape":["1"],"data_offsets":[0,4]'), /^tensor #1: shape is not a list of non-negative integers$/);
	await rejects(entry('"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,4]'), /^tensor #1: shape is not a list of non-negative integers$/);
	await rejects(entry('"dtype":"F32","data_offsets":[0,4]'), /^tensor #1: shape is missing$/);
	await rejects(entry(`"dtype":"F32","shape":[${Array.from({length: 65}, () => 1).join(',')}],"data_offsets":[0,4]`), /^tensor #1: shape has more than 64 dimensions$/);
	await rejects(entry('"dtype":"F32","shape":[2,3],"data_offsets":[0,20]', 20), /^tensor #1: byte length 20 does not match shape \[2, 3\] × F32 \(24\)$/);
	await rejects(entry(`"dtype":"U8","shape":[${Array.from({length: 12}, () => 2).join(',')}],"data_offsets":[0,4]`), /does not match shape \[2, 2, 2, 2, … \(12 dims\)\] × U8 \(4096\)$/);
	await rejects(entry('"dtype":"F32","shape":[1],"data_offsets":[0,8]'), /^tensor #1: data_offsets end 8 beyond the data area \(4 bytes\)$/);
	await rejects(entry('"dtype":"F32","shape":[1],"data_offsets":[4,0]'), /^tensor #1: data_offsets end 0 before begin 4$/);
	await rejects(entry('"dtype":"F32","shape":[1],"data_offsets":[-4,0]'), /^tensor #1: data_offsets is not a pair of non-negative integers$/);
	await rejects(entry('"dtype":"F32","shape":[1],"data_offsets":[0]'), /^tensor #1: data_offsets is not a pair of non-negative integers$/);
	await rejects(entry('"dtype":"F32","shape":[1],"data_offsets":{"0":0,"1":4}'), /^tensor #1: data_offsets is not a pair of non-negative integers$/);
	await rejects(entry('"dtype":"F32","shape":[1]'), /^tensor #1: data_offsets is missing$/);
	await rejects(rawFile('{"t":[1]}', Buffer.alloc(4)), /^tensor #1: tensor entry is a JSON array, not an object$/);
	await rejects(rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}}', Buffer.alloc(12)), /^tensor #2 \(in offset order\) overlaps the previous tensor's bytes$/);
	await rejects(rawFile('{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Buffer.alloc(8)), /overlaps the previous tensor's bytes$/);
	await rejects(rawFile('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":' + '['.repeat(129) + ']'.repeat(129) + '}}', Buffer.alloc(4)), /^header JSON nests deeper than 128 levels$/);
});

test('accepted oddities: zero-size tensors sharing offsets, unknown fields, gaps, trailing bytes, out-of-order entries', async () => {
	const header = await readHeader(await fileWith(rawFile(
		'{"z1":{"dtype":"F16","shape":[0,4],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12],"extra":{"nested":[1,{"k":null}]}},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z2":{"dtype":"F32","shape":[],"data_offsets":[12,16]}}',
		Buffer.alloc(20),
	)));
	assert.deepEqual(header.tensors.map(t => t.name), ['a', 'z1', 'b', 'z2'], 'sorted by offset');
	assert.deepEqual(header.byName.get('z2')?.shape, []);
	assert.equal(header.tensors.length, 4);
});

test('metadata must be a string→string map', async () => {
	await rejects(rawFile(`{"__metadata__":[],${one}}`, Buffer.alloc(4)), /^__metadata__ is JSON array, not an object$/);
	await rejects(rawFile(`{"__metadata__":"x",${one}}`, Buffer.alloc(4)), /^__metadata__ is JSON string, not an object$/);
	await rejects(rawFile(`{"__metadata__":{"a":1},${one}}`, Buffer.alloc(4)), /^__metadata__ value is number, not a string$/);
	await rejects(rawFile(`{"__metadata__":{"a":true},${one}}`, Buffer.alloc(4)), /^__metadata__ value is boolean, not a string$/);
	await rejects(rawFile(`{"__metadata__":{"a":null},${one}}`, Buffer.alloc(4)), /^__metadata__ value is null, not a string$/);
	await rejects(rawFile(`{"__metadata__":{"a":["x"]},${one}}`, Buffer.alloc(4)), /^__metadata__ value is a JSON array, not a string$/);
	const header = await readHeader(await fileWith(rawFile(`{"__metadata__":{"__proto__":"p","esc":"\\u001b[2J","s":"é\\n"},${one}}`, Buffer.alloc(4))));
	assert.equal(header.metadata['__proto__'], 'p', '__proto__ is an ordinary key');
	assert.equal(header.metadata['esc'], '\u001B[2J', 'metadata is kept raw (sanitised at display time)');
	assert.equal(header.metadata['s'], 'é\n');
});

test('non-ASCII names and values are decoded from UTF-8, with and without escapes', async () => {
	// The parser reads bytes: ASCII strings take a fast path, others are decoded as UTF-8.
	const json = '{"__metadata__":{"tags":"日本語, café 🎨","mixed":"ü\\t\\u00e9"},"ünet.α":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
	const header = await readHeader(await fileWith(rawFile(json, Buffer.alloc(4))));
	const expected = JSON.parse(json) as {__metadata__: Record<string, string>};
	assert.equal(header.metadata['tags'], expected.__metadata__['tags']);
	assert.equal(header.metadata['mixed'], 'ü\té');
	assert.deepEqual(header.tensors.map(t => t.name), ['ünet.α']);
	// A byte that is not UTF-8 anywhere in the header is refused before parsing.
	const bad = Buffer.concat([Buffer.from('{"__metadata__":{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from(`"},${one}}`)]);
	await rejects(rawFile(bad, Buffer.alloc(4)), /^header is not valid UTF-8$/);
});

test('Git LFS pointers and pickles are recognised by content and extension, never parsed', async () => {
	const marker = path.join(dir, 'UNPICKLED.marker');
	await rejects(Buffer.from('version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n'), /^Git LFS pointer, not the file itself/);
	for (const name of ['a.ckpt', 'a.pt', 'a.safetensors']) {
		assert.match(await reasonOf(await fileWith(torchZipPayload(marker), `zip-${name}`)), /^PyTorch zip\/pickle file; pickles are never unpickled/);
	}

	for (const name of ['b.bin', 'b.pt', 'b.safetensors']) {
		assert.match(await reasonOf(await fileWith(picklePayloadProtocol2(marker), `p2-${name}`)), /^pickle file; pickles are never unpickled/);
	}

	assert.match(await reasonOf(await fileWith(Buffer.from('(lp0\n.'), 'p0.ckpt')), /^pickle file/);
	await assert.rejects(readHeader(marker), /file not found/, 'nothing was unpickled');
});

test('sniffFileKind: content first; a 640-byte header (0x80 0x02 …) is safetensors, not pickle', async () => {
	const header640 = rawFile(`{${one}}`.padEnd(640, ' '), Buffer.alloc(4));
	assert.equal(header640[0], 0x80);
	assert.equal(header640[1], 0x02);
	assert.equal(sniffFileKind(header640.subarray(0, 32), 'x.safetensors'), 'safetensors');
	assert.equal(sniffFileKind(header640.subarray(0, 32), 'x.bin'), 'safetensors', 'a real safetensors named .bin is read');
	assert.equal((await readHeader(await fileWith(header640))).tensors.length, 1);
	assert.equal(sniffFileKind(new Uint8Array(), 'x'), 'empty');
	assert.equal(sniffFileKind(picklePayloadProtocol2('/m').subarray(0, 32), 'x.safetensors'), 'pickle');
	assert.equal(sniffFileKind(Buffer.from('PK\u0003\u0004rest-of-zip'), 'x.safetensors'), 'pickle-zip');
	assert.equal(sniffFileKind(Buffer.from('(lp0'), 'x.pt'), 'pickle');
	assert.equal(sniffFileKind(Buffer.from('abc'), 'x.safetensors'), 'unknown');
});

test('file-system cases: directory, symlink loop, dangling link, FIFO', async () => {
	const folder = path.join(dir, 'folder.safetensors');
	await mkdir(folder);
	assert.equal(await reasonOf(folder), 'is a directory');
	const loopA = path.join(dir, 'loop-a.safetensors');
	const loopB = path.join(dir, 'loop-b.safetensors');
	await symlink(loopB, loopA);
	await symlink(loopA, loopB);
	assert.equal(await reasonOf(loopA), 'symbolic link loop');
	const dangling = path.join(dir, 'dangling.safetensors');
	await symlink(path.join(dir, 'nowhere'), dangling);
	assert.equal(await reasonOf(dangling), 'file not found');
	const fifo = path.join(dir, 'fifo.safetensors');
	if (spawnSync('mkfifo', [fifo]).status === 0) {
		// Without O_NONBLOCK this open would wait forever for a writer.
		assert.equal(await reasonOf(fifo), 'not a regular file (device, FIFO or socket)');
	}
});

test('an unreadable file yields "permission denied"', async t => {
	const lora = goodLora(8);
	const file = await fileWith(safetensorsFile(lora.tensors, lora.metadata), 'locked.safetensors');
	await chmod(file, 0o000);
	if (process.getuid?.() !== 0) {
		assert.equal(await reasonOf(file), 'permission denied');
		return;
	}

	// Root reads anything, so check from a child process running as `nobody`.
	await chmod(dir, 0o755);
	const script = path.join(dir, 'read-as-nobody.mts');
	await writeFile(script, [
		`import {readHeader} from ${JSON.stringify(pathToFileURL(path.join(repoRoot, 'source/lora/safetensors.ts')).href)};`,
		`readHeader(${JSON.stringify(file)}).then(() => console.log('READ'), e => console.log('REASON:' + e.reason));`,
	].join('\n'));
	await chmod(script, 0o644);
	const result = spawnSync(process.execPath, ['--import', 'tsx', script], {cwd: repoRoot, uid: 65_534, gid: 65_534, encoding: 'utf8', timeout: 30_000});
	if (result.error || !/REASON:|READ/.test(result.stdout)) {
		t.skip(`running as root and cannot run a child as nobody (${result.error?.message ?? result.stderr.split('\n')[0]})`);
		return;
	}

	assert.equal(result.stdout.trim(), 'REASON:permission denied');
});

test('a file truncated while it is being read: header read and tensor read both fail cleanly', async () => {
	const lora = goodLora(9);
	const bytes = safetensorsFile(lora.tensors, lora.metadata);
	const file = await fileWith(bytes);

	// Header: the size said N bytes when stat ran; reads then hit the end (a writer truncated it).
	const headerLength = Number(bytes.readBigUInt64LE(0));
	const cut = 8 + Math.floor(headerLength / 2);
	const fake = {
		stat: async () => ({isDirectory: () => false, isFile: () => true, size: bytes.length, mtimeMs: 0}),
		async read(buffer: Uint8Array, offset: number, length: number, position: number) {
			const available = Math.max(0, Math.min(length, cut - position));
			buffer.set(bytes.subarray(position, position + available), offset);
			return {bytesRead: available, buffer};
		},
	} as unknown as FileHandle;
	await assert.rejects(readHeaderFromHandle(fake, file), (error: unknown) => {
		assert.ok(error instanceof LoraFileError);
		assert.match(error.reason, new RegExp(`^file ended at byte ${cut} while reading ${headerLength} bytes at 8 \\(truncated or being written\\)$`));
		return true;
	});

	// Tensor: the header was fine, then the file shrank under an open reader.
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	try {
		await truncate(file, header.dataOffset + 10);
		const last = header.tensors.at(-1)!;
		await assert.rejects(reader.read(last.name), /^.*: file ended at byte \d+ while reading \d+ bytes/);
	} finally {
		await reader.close();
	}

	// A reader opened after the file changed refuses to use stale offsets.
	await assert.rejects(TensorReader.open(header), /file changed since its header was read/);
});

test('1,000,000 tensor entries parse in bounded time', async t => {
	const count = 1_000_000;
	const parts: string[] = [];
	for (let i = 0; i < count; i++) {
		const slot = count - 1 - i; // Reverse order: the reader has to sort
		parts.push(`"t${i}":{"dtype":"F16","shape":[1],"data_offsets":[${slot * 2},${(slot * 2) + 2}]}`);
	}

	const bytes = rawFile(`{${parts.join(',')}}`, Buffer.alloc(count * 2));
	const start = performance.now();
	const header = parseHeaderBytes('many.safetensors', bytes.subarray(8, bytes.length - (count * 2)), bytes.length, 0);
	const seconds = (performance.now() - start) / 1000;
	t.diagnostic(`1,000,000 entries (${(bytes.length / 1e6).toFixed(1)} MB header) parsed in ${seconds.toFixed(2)} s`);
	assert.equal(header.tensors.length, count);
	assert.equal(header.tensors[0]!.name, `t${count - 1}`);
	assert.equal(header.byName.get('t0')!.begin, (count - 1) * 2);
	assert.ok(seconds < 30, `took ${seconds} s`);
});

test('error messages: one line, base name with control characters escaped; errorReason for anything', () => {
	const error = new LoraFileError('/x/\u001B]0;T\u0007evil\u202E.safetensors', 'empty file');
	assert.equal(error.message, '\\x1b]0;T\\x07evil\\u{202e}.safetensors: empty file');
	assert.equal(errorReason(error), 'empty file');
	assert.equal(errorReason(new Error('first\nsecond')), 'first');
	assert.equal(errorReason(new Error('bad \u001B[2J\u009B')), 'bad \\x1b[2J\\x9b');
	assert.equal(errorReason('plain'), 'plain');
	assert.equal(errorReason(undefined), 'undefined');
	assert.ok(errorReason(new Error('x'.repeat(10_000))).length <= 300);
});

test('canonical entries (the fast path) and spaced-out ones (the general parser) read alike, errors included', () => {
	// The same header twice: as writers emit it, and with a space after every ':' and ',', which
	// the fast path does not take. Results and error messages must not depend on the path.
	const spaced = (json: string): string => json.replaceAll(/([:,])(?=["[{\d-])/g, '$1 ');
	const parse = (json: string, dataSize: number): unknown => {
		const bytes = Buffer.from(json);
		try {
			const header = parseHeaderBytes('x.safetensors', bytes, 8 + bytes.length + dataSize, 0);
			return {tensors: header.tensors, metadata: {...header.metadata}};
		} catch (error) {
			// Positions differ by the inserted spaces; the reason must not.
			return (error as Error).message.replace(/ at byte \d+/, '');
		}
	};

	const entries = [
		'"a":{"dtype":"F16","shape":[320,4],"data_offsets":[0,2560]}',
		'"b":{"dtype":"BF16","shape":[],"data_offsets":[2560,2562]}',
		'"c":{"dtype":"F32","shape":[2,0,3],"data_offsets":[2562,2562]}',
		'"d":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,7],"data_offsets":[2562,2569]}',
	];
	const cases: Array<[string, number]> = [
		[`{"__metadata__":{"k":"v"},${entries.join(',')}}`, 2569],
		['{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 8], // Byte length ≠ shape × size
		['{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', 8], // End before begin
		['{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 2], // Beyond the data area
		['{"t":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}', 4], // Leading zero
		['{"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}', 4], // A fraction
		['{"t":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}', 4], // An exponent
		['{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', 4], // Negative
		['{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', 8], // Three offsets
		['{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,1234567890123456]}}', 8], // 16 digits
		['{"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}', 4], // Unknown dtype
		['{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}', 4], // An extra key
		['{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4],
		['{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}', 4], // Unterminated
	];
	for (const [json, dataSize] of cases) {
		const fast = parse(json, dataSize);
		assert.deepEqual(parse(spaced(json), dataSize), fast, json);
	}

	// The good header really parsed, with the values written above.
	const good = parse(cases[0]![0], 2569) as {tensors: Array<{name: string; shape: number[]; begin: number; end: number}>};
	assert.deepEqual(good.tensors.map(t => [t.name, t.shape, t.begin, t.end]), [['a', [320, 4], 0, 2560], ['b', [], 2560, 2562], ['c', [2, 0, 3], 2562, 2562], ['d', [1, 1, 1, 1, 1, 1, 1, 1, 1, 7], 2562, 2569]]);
});
