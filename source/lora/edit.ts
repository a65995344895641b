// Metadata editing that is safe for the file: only the header is rewritten, the tensor bytes are
// copied unchanged (and checked by hash), the result replaces the file atomically, the file's mode
// is kept, an optional `.bak` keeps the original, and the sd-scripts hashes are recomputed.
// A file that changed on disk since it was read is never overwritten.
import {createHash} from 'node:crypto';
import {copyFile, link, realpath, rename, stat, unlink} from 'node:fs/promises';
import path from 'node:path';
import {SshsHasher, sshsLegacyHash, type SshsHashes} from './hashes.js';
import {replacePythonNonFinite} from './sanitize.js';
import {maxHeaderBytes, openForRead, readHeaderFromHandle} from './safetensors.js';
import type {ProgressCallback, SafetensorsHeader, TensorInfo} from './types.js';
import {tempPathFor, writeFileAtomic} from './writer.js';

/** Size and mtime of a file when it was read; a save refuses if either differs now. */
export type ReadStamp = {sizeBytes: number; mtimeMs: number};

/** The file is not the one that was read (edited, replaced or truncated since). `reason` is one line. */
export class FileChangedError extends Error {
	readonly filePath: string;
	readonly reason: string;

	constructor(filePath: string, reason: string) {
		super(`${path.basename(filePath)}: ${reason}`);
		this.name = 'FileChangedError';
		this.filePath = filePath;
		this.reason = reason;
	}
}

/** A metadata edit that cannot be applied (bad key, bad import file). `reason` is one line. */
export class MetadataEditError extends Error {
	readonly reason: string;

	constructor(reason: string) {
		super(reason);
		this.name = 'MetadataEditError';
		this.reason = reason;
	}
}

export type SaveMetadataOptions = {
	/** Size and mtime from when the file was read (header.sizeBytes / header.mtimeMs). */
	expected: ReadStamp;
	/** Keep the replaced file as `<name>.bak` (replacing an older backup). */
	backup?: boolean;
	/** Write the result here instead of replacing the file. */
	outPath?: string;
	/** Allow replacing an existing `outPath` (saving in place always replaces). */
	overwrite?: boolean;
	/**
	 * sha256 of the data area, when already computed for this same size+mtime (the hash job):
	 * saves one full read when the sshs hashes must be recomputed. It is still checked against
	 * the bytes copied.
	 */
	knownDataSha256?: string;
	onProgress?: ProgressCallback;
	signal?: AbortSignal;
	/** Read size per chunk. */
	chunkBytes?: number;
};

export type SaveMetadataResult = {
	/** The file written (the real path when the input was a symbolic link). */
	path: string;
	backupPath: string | null;
	sizeBytes: number;
	mtimeMs: number;
	/** sha256 of the data area, identical in source and result (checked). */
	dataSha256: string;
	/** Recomputed sd-scripts hashes, when the metadata carries them. */
	hashes: SshsHashes | null;
	/** The metadata as written (with recomputed hashes). */
	metadata: Record<string, string>;
};

const hashKeys = ['sshs_model_hash', 'sshs_legacy_hash'] as const;

/** Return a copy of the map with one key set. */
export function setKey(metadata: Readonly<Record<string, string>>, key: string, value: string): Record<string, string> {
	if (key.length === 0) {
		throw new MetadataEditError('metadata key is empty');
	}

	return {...metadata, [key]: value};
}

/** Return a copy of the map without the key (unchanged copy if it was absent). */
export function removeKey(metadata: Readonly<Record<string, string>>, key: string): Record<string, string> {
	const copy: Record<string, string> = {...metadata};
	delete copy[key];
	return copy;
}

/**
 * Render one metadata value as data: JSON inside strings is parsed, "None" is null, "True"/"False"
 * are booleans, plain decimal numbers within double precision are numbers; anything else stays a
 * string. Never throws.
 */
export function parseMetadataValue(value: string): unknown {
	if (value === 'None') {
		return null;
	}

	if (value === 'True' || value === 'False') {
		return value === 'True';
	}

	if (/^-?(?:0|[1-9]\d{0,14})(?:\.\d+)?(?:[eE][-+]?\d+)?$/.test(value)) {
		const number = Number(value);
		if (Number.isFinite(number)) {
			return number;
		}
	}

	const first = value.trimStart()[0];
	if (first === '{' || first === '[') {
		try {
			return JSON.parse(value) as unknown;
		} catch {
			// Python's json.dumps writes NaN/Infinity bare; read those as null rather than give up.
			try {
				return JSON.parse(replacePythonNonFinite(value)) as unknown;
			} catch {
				return value;
			}
		}
	}

	return value;
}

/**
 * Export layout: lora-inspector's `--save_meta` JSON (every metadata key with its parsed value,
 * plus `file` and `filename`), with the raw string map added under `__metadata__` so an export
 * can be imported back exactly.
 */
export type ExportedMetadata = Record<string, unknown> & {
	file: string;
	filename: string;
	['__metadata__']: Record<string, string>;
};

export function exportMetadata(header: Pick<SafetensorsHeader, 'path' | 'metadata'>): ExportedMetadata {
	const exported: Record<string, unknown> = {};
	for (const [key, value] of Object.entries(header.metadata)) {
		exported[key] = parseMetadataValue(value);
	}

	// Assigned last so they win over metadata keys of the same name, as in lora-inspector.
	exported['file'] = header.path;
	exported['filename'] = path.basename(header.path);
	exported['__metadata__'] = {...header.metadata};
	return exported as ExportedMetadata;
}

/** Name lora-inspector gives an export: `meta/<stem>.json`. */
export function exportFileName(filePath: string): string {
	return `${path.basename(filePath, path.extname(filePath))}.json`;
}

/**
 * Read the raw metadata map out of an import: either an export (its `__metadata__` map; the
 * parsed copies beside it are ignored) or a plain {key: string} map. Accepts text or parsed JSON.
 */
export function importMetadata(json: unknown): Record<string, string> {
	let value = json;
	if (typeof value === 'string') {
		try {
			value = JSON.parse(value) as unknown;
		} catch (error) {
			const message = error instanceof Error ? (error.message.split('\n')[0] ?? '').slice(0, 80) : 'parse error';
			throw new MetadataEditError(`import file is not valid JSON (${message})`);
		}
	}

	if (typeof value !== 'object' || value === null || Array.isArray(value)) {
		throw new MetadataEditError('import file must hold a JSON object');
	}

	const object = value as Record<string, unknown>;
	const raw = object['__metadata__'];
	const source = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw as Record<string, unknown> : object;
	const result: Record<string, string> = {};
	for (const [key, item] of Object.entries(source)) {
		if (typeof item !== 'string') {
			throw new MetadataEditError(raw === undefined
				? `import value of a key is ${item === null ? 'null' : typeof item}, not a string (give a raw metadata map or a lorascope export)`
				: `__metadata__ value of a key is ${item === null ? 'null' : typeof item}, not a string`);
		}

		if (key.length === 0) {
			throw new MetadataEditError('import has an empty metadata key');
		}

		result[key] = item;
	}

	return result;
}

/**
 * Header bytes for the same tensors at the same data offsets with new metadata: `__metadata__`
 * first (omitted when empty), tensors in data order, JSON padded with spaces to a multiple of 8.
 */
export function headerWithMetadata(tensors: readonly TensorInfo[], metadata: Readonly<Record<string, string>>): Buffer {
	const object: Record<string, unknown> = {};
	if (Object.keys(metadata).length > 0) {
		object['__metadata__'] = metadata;
	}

	for (const tensor of tensors) {
		object[tensor.name] = {dtype: tensor.dtype, shape: tensor.shape, ['data_offsets']: [tensor.begin, tensor.end]};
	}

	const json = Buffer.from(JSON.stringify(object), 'utf8');
	const padding = (8 - (json.length % 8)) % 8;
	const prefix = Buffer.alloc(8);
	prefix.writeBigUInt64LE(BigInt(json.length + padding));
	return Buffer.concat([prefix, json, Buffer.alloc(padding, 0x20)]);
}

function checkStamp(filePath: string, expected: ReadStamp, actual: ReadStamp): void {
	if (actual.sizeBytes !== expected.sizeBytes) {
		throw new FileChangedError(filePath, `changed on disk since it was read (size ${expected.sizeBytes} → ${actual.sizeBytes} bytes); reload it first`);
	}

	if (actual.mtimeMs !== expected.mtimeMs) {
		throw new FileChangedError(filePath, 'changed on disk since it was read (modification time differs); reload it first');
	}
}

function throwIfAborted(signal: AbortSignal | undefined): void {
	if (signal?.aborted) {
		throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
	}
}

async function exists(filePath: string): Promise<boolean> {
	try {
		await stat(filePath);
		return true;
	} catch {
		return false;
	}
}

/**
 * Keep the file about to be replaced as `<name>.bak`. A hard link costs nothing and is safe here
 * because the original inode is never written again (the new file comes in by rename); where
 * links are not supported, the bytes are copied. An older backup is replaced atomically.
 */
async function makeBackup(filePath: string): Promise<string> {
	const backupPath = `${filePath}.bak`;
	const temporary = tempPathFor(backupPath);
	try {
		await link(filePath, temporary);
	} catch {
		await copyFile(filePath, temporary);
	}

	try {
		await rename(temporary, backupPath);
	} catch (error) {
		await unlink(temporary).catch(() => undefined);
		throw error;
	}

	return backupPath;
}

/** sha256 of a file's bytes from `dataOffset` to `sizeBytes`. */
async function hashDataArea(
	filePath: string,
	area: {sizeBytes: number; dataOffset: number},
	chunkBytes: number,
	onChunk: (bytes: number) => void,
): Promise<string> {
	const handle = await openForRead(filePath);
	try {
		const hash = createHash('sha256');
		const buffer = Buffer.allocUnsafe(chunkBytes);
		let position = area.dataOffset;
		while (position < area.sizeBytes) {
			const {bytesRead} = await handle.read(buffer, 0, Math.min(chunkBytes, area.sizeBytes - position), position);
			if (bytesRead === 0) {
				throw new FileChangedError(filePath, `ended at byte ${position} of ${area.sizeBytes}`);
			}

			hash.update(buffer.subarray(0, bytesRead));
			position += bytesRead;
			onChunk(bytesRead);
		}

		return hash.digest('hex');
	} finally {
		await handle.close();
	}
}

/**
 * Replace a .safetensors file's metadata. Rewrites only the header and copies the tensor bytes
 * unchanged; refuses (FileChangedError) when the file is not the one described by `expected`.
 * When the new metadata has `sshs_model_hash` / `sshs_legacy_hash`, they are recomputed the way
 * sd-scripts does (see hashes.ts).
 */
export async function saveMetadata(
	filePath: string,
	newMetadata: Readonly<Record<string, string>>,
	options: SaveMetadataOptions,
): Promise<SaveMetadataResult> {
	for (const [key, value] of Object.entries(newMetadata)) {
		if (typeof value !== 'string') {
			throw new MetadataEditError(`metadata value of ${JSON.stringify(key.slice(0, 60))} is not a string`);
		}
	}

	const chunkBytes = options.chunkBytes ?? 4 * 1024 * 1024;
	// Write beside the real file, so a symbolic link keeps pointing at the edited file.
	const source = await realpath(filePath).catch(() => filePath);
	const target = options.outPath === undefined ? source : path.resolve(options.outPath);
	const targetReal = await realpath(target).catch(() => target);
	const inPlace = targetReal === source;

	const handle = await openForRead(source);
	let header: SafetensorsHeader;
	let mode: number;
	let identity: {dev: number; ino: number};
	try {
		header = await readHeaderFromHandle(handle, source);
		const info = await handle.stat();
		mode = info.mode & 0o7777;
		identity = {dev: info.dev, ino: info.ino};
	} finally {
		await handle.close();
	}

	checkStamp(source, options.expected, header);
	const dataLength = header.sizeBytes - header.dataOffset;
	const metadata: Record<string, string> = {...newMetadata};
	const recompute = hashKeys.some(key => key in metadata);
	const passes = (recompute && options.knownDataSha256 === undefined ? 1 : 0) + 2;
	const total = dataLength * passes;
	let done = 0;
	const advance = (bytes: number, label: string): void => {
		done += bytes;
		options.onProgress?.({done, total, label});
	};

	let expectedDataSha = options.knownDataSha256?.toLowerCase();
	let hashes: SshsHashes | null = null;
	if (recompute) {
		if (options.knownDataSha256 === undefined) {
			// Pass 1: the header goes first in the new file, so the data hash is needed before copying.
			const hasher = new SshsHasher(header.tensors, metadata);
			const reader = await openForRead(source);
			try {
				const buffer = Buffer.allocUnsafe(chunkBytes);
				let position = header.dataOffset;
				while (position < header.sizeBytes) {
					throwIfAborted(options.signal);
					const {bytesRead} = await reader.read(buffer, 0, Math.min(chunkBytes, header.sizeBytes - position), position);
					if (bytesRead === 0) {
						throw new FileChangedError(source, 'was truncated while it was read');
					}

					hasher.update(buffer.subarray(0, bytesRead));
					position += bytesRead;
					advance(bytesRead, 'hashing');
				}
			} finally {
				await reader.close();
			}

			hashes = hasher.digest();
		} else {
			const reader = await openForRead(source);
			try {
				const legacyHash = await sshsLegacyHash(header.tensors, metadata, dataLength, async (begin, length) => {
					const buffer = Buffer.alloc(length);
					await reader.read(buffer, 0, length, header.dataOffset + begin);
					return buffer;
				});
				hashes = {modelHash: options.knownDataSha256.toLowerCase(), legacyHash};
			} finally {
				await reader.close();
			}
		}

		expectedDataSha = hashes.modelHash;
		if ('sshs_model_hash' in metadata) {
			metadata['sshs_model_hash'] = hashes.modelHash;
		}

		if ('sshs_legacy_hash' in metadata) {
			metadata['sshs_legacy_hash'] = hashes.legacyHash;
		}
	}

	const newHeader = headerWithMetadata(header.tensors, metadata);
	if (newHeader.length - 8 > maxHeaderBytes) {
		throw new MetadataEditError(`new header would be ${newHeader.length - 8} bytes, over the ${maxHeaderBytes / 1024 / 1024} MB limit`);
	}

	let backupPath: string | null = null;
	const replaces = inPlace || options.overwrite === true;
	if (options.backup && replaces && await exists(targetReal)) {
		backupPath = await makeBackup(targetReal);
	}

	const copied = createHash('sha256');
	async function * chunks(): AsyncGenerator<Uint8Array> {
		yield newHeader;
		const reader = await openForRead(source);
		try {
			const info = await reader.stat();
			if (info.dev !== identity.dev || info.ino !== identity.ino) {
				throw new FileChangedError(source, 'was replaced on disk while it was saved');
			}

			let position = header.dataOffset;
			while (position < header.sizeBytes) {
				throwIfAborted(options.signal);
				// A fresh buffer per chunk: the writer may still hold the previous one.
				const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, header.sizeBytes - position));
				const {bytesRead} = await reader.read(buffer, 0, buffer.length, position);
				if (bytesRead === 0) {
					throw new FileChangedError(source, 'was truncated while it was saved');
				}

				const chunk = buffer.subarray(0, bytesRead);
				copied.update(chunk);
				position += bytesRead;
				advance(bytesRead, 'writing');
				yield chunk;
			}

			// Last check before the rename: the source must still be the file that was read.
			const after = await stat(source);
			checkStamp(source, options.expected, {sizeBytes: after.size, mtimeMs: after.mtimeMs});
			if (after.dev !== identity.dev || after.ino !== identity.ino) {
				throw new FileChangedError(source, 'was replaced on disk while it was saved');
			}
		} finally {
			await reader.close();
		}

		const copiedSha = copied.copy().digest('hex');
		if (expectedDataSha !== undefined && copiedSha !== expectedDataSha) {
			throw new FileChangedError(source, 'tensor data changed while it was saved (hash differs between reads)');
		}
	}

	await writeFileAtomic(target, chunks(), {overwrite: replaces, mode, signal: options.signal});
	const dataSha256 = copied.digest('hex');

	// Read the result back: its data area must hash to what was copied.
	const written = await stat(target);
	const resultSha = await hashDataArea(
		target,
		{sizeBytes: written.size, dataOffset: newHeader.length},
		chunkBytes,
		bytes => {
			advance(bytes, 'verifying');
		},
	);
	if (resultSha !== dataSha256) {
		throw new Error(`${path.basename(target)}: written tensor data does not match the source (hash ${resultSha.slice(0, 12)} ≠ ${dataSha256.slice(0, 12)})${backupPath ? `; original kept as ${path.basename(backupPath)}` : ''}`);
	}

	return {
		path: target,
		backupPath,
		sizeBytes: written.size,
		mtimeMs: written.mtimeMs,
		dataSha256,
		hashes,
		metadata,
	};
}
