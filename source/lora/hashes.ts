// File hashes people use to identify a LoRA (Civitai's AutoV2, the full SHA-256) and the two
// hashes kohya sd-scripts stores in the metadata (`sshs_model_hash`, `sshs_legacy_hash`), with
// whether the stored ones still match the file.
//
// sd-scripts (`train_util.precalculate_safetensors_hashes`) serialises the tensors again with only
// the `ss_*` metadata keys and hashes that byte string:
//   sshs_model_hash  = sha256 of every byte after the header
//   sshs_legacy_hash = first 8 hex of sha256 of the 64 KiB at byte offset 1 MiB (fewer bytes, or
//                      none, when the serialisation is shorter: "e3b0c442" is the hash of nothing)
// The bytes after the header do not depend on the metadata, so the model hash is simply the sha256
// of the file's data area. The legacy hash does: the header (with `ss_*` keys only) shifts where
// the 1 MiB offset falls, so it is computed on that virtual serialisation here too.
import {createHash, type Hash} from 'node:crypto';
import {LoraFileError, openForRead, readHeaderFromHandle} from './safetensors.js';
import type {DType, ProgressCallback, SafetensorsHeader} from './types.js';
import {dtypeSize} from './dtypes.js';

/** sha256 of zero bytes: what some tools store as `sshs_model_hash` without hashing anything. */
export const emptySha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Where sd-scripts' legacy hash window starts and how long it is. */
export const legacyWindowOffset = 0x10_00_00;
export const legacyWindowLength = 0x1_00_00;

export type HashStatus = 'verified' | 'stale' | 'absent' | 'bogus';

export type SshsHashes = {
	/** Value for `sshs_model_hash` (64 hex). */
	modelHash: string;
	/** Value for `sshs_legacy_hash` (8 hex). */
	legacyHash: string;
};

export type FileHashes = {
	path: string;
	sizeBytes: number;
	mtimeMs: number;
	/** sha256 of the whole file (what `sha256sum` prints). */
	sha256: string;
	/** Civitai's AutoV2: the first 10 hex digits of the full sha256. */
	autov2: string;
	/** sha256 of the bytes after the header: what `sshs_model_hash` should be. */
	dataSha256: string;
	/** What `sshs_legacy_hash` should be (sd-scripts' definition, see top of file). */
	legacyHash: string;
	storedModelHash: string | null;
	storedLegacyHash: string | null;
	modelHashStatus: HashStatus;
	legacyHashStatus: HashStatus;
};

export type HashOptions = {
	onProgress?: ProgressCallback;
	signal?: AbortSignal;
	/** Read size per chunk; tests lower it to exercise chunk boundaries. */
	chunkBytes?: number;
};

type LaidOutTensor = {name: string; dtype: DType; shape: readonly number[]; begin: number; end: number};

/** The `ss_*` keys sd-scripts keeps when it computes its hashes (`sshs_*` do not start with `ss_`). */
export function sshsMetadata(metadata: Readonly<Record<string, string>>): Record<string, string> {
	const kept: Record<string, string> = {};
	for (const [key, value] of Object.entries(metadata)) {
		if (key.startsWith('ss_')) {
			kept[key] = value;
		}
	}

	return kept;
}

/**
 * JSON of the serialisation sd-scripts hashes: `__metadata__` with only the `ss_*` keys (always
 * present, since sd-scripts passes a dict even when it is empty), then the tensors in data order
 * with their offsets. Unpadded and without the length prefix.
 */
function sshsHeaderJson(tensors: readonly LaidOutTensor[], metadata: Readonly<Record<string, string>>): Buffer {
	const object: Record<string, unknown> = {['__metadata__']: sshsMetadata(metadata)};
	for (const tensor of [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
		object[tensor.name] = {dtype: tensor.dtype, shape: tensor.shape, ['data_offsets']: [tensor.begin, tensor.end]};
	}

	return Buffer.from(JSON.stringify(object), 'utf8');
}

/**
 * Header bytes (8-byte length + JSON) of the serialisation sd-scripts hashes. Current safetensors
 * pads the JSON with spaces to a multiple of 8; releases before mid-2023 did not (`padded: false`).
 */
export function sshsHeaderBytes(tensors: readonly LaidOutTensor[], metadata: Readonly<Record<string, string>>, padded = true): Buffer {
	return withLengthPrefix(sshsHeaderJson(tensors, metadata), padded);
}

function withLengthPrefix(json: Buffer, padded: boolean): Buffer {
	const padding = padded ? (8 - (json.length % 8)) % 8 : 0;
	const prefix = Buffer.alloc(8);
	prefix.writeBigUInt64LE(BigInt(json.length + padding));
	return Buffer.concat([prefix, json, Buffer.alloc(padding, 0x20)]);
}

/** sha256 over the bytes of the legacy window that fall in the data area (and the header, if it reaches there). */
class LegacyWindow {
	readonly hash: Hash = createHash('sha256');
	/** Data-area offsets of the window (negative when the header reaches into it). */
	readonly begin: number;
	readonly end: number;

	constructor(header: Buffer) {
		this.begin = legacyWindowOffset - header.length;
		this.end = this.begin + legacyWindowLength;
		if (this.begin < 0) {
			this.hash.update(header.subarray(legacyWindowOffset, legacyWindowOffset + legacyWindowLength));
		}
	}

	update(chunk: Uint8Array, start: number): void {
		const from = Math.max(start, this.begin, 0);
		const to = Math.min(start + chunk.byteLength, this.end);
		if (to > from) {
			this.hash.update(chunk.subarray(from - start, to - start));
		}
	}
}

/**
 * Incremental sd-scripts hasher: feed it the data area (the bytes after the header) in order, in
 * chunks of any size, then call digest(). Pure apart from hashing; no I/O.
 */
export class SshsHasher {
	private readonly data: Hash = createHash('sha256');
	private readonly padded: LegacyWindow;
	/** The same window as an unpadded (pre-2023 safetensors) header put it; null when both agree. */
	private readonly unpadded: LegacyWindow | null;
	private position = 0;

	constructor(tensors: readonly LaidOutTensor[], metadata: Readonly<Record<string, string>>) {
		const json = sshsHeaderJson(tensors, metadata);
		this.padded = new LegacyWindow(withLengthPrefix(json, true));
		this.unpadded = json.length % 8 === 0 ? null : new LegacyWindow(withLengthPrefix(json, false));
	}

	update(chunk: Uint8Array): void {
		this.data.update(chunk);
		this.padded.update(chunk, this.position);
		this.unpadded?.update(chunk, this.position);
		this.position += chunk.byteLength;
	}

	/** Bytes fed so far. */
	get bytes(): number {
		return this.position;
	}

	digest(): SshsHashes {
		return {modelHash: this.data.digest('hex'), legacyHash: this.padded.hash.digest('hex').slice(0, 8)};
	}

	/**
	 * Both candidate legacy hashes: the one current sd-scripts writes, and the one an older
	 * safetensors (unpadded header) gave. Call instead of digest(), not after it.
	 */
	digestAll(): SshsHashes & {legacyHashUnpadded: string} {
		const legacyHashUnpadded = this.unpadded?.hash.digest('hex').slice(0, 8);
		const result = this.digest();
		return {...result, legacyHashUnpadded: legacyHashUnpadded ?? result.legacyHash};
	}
}

/**
 * `sshs_legacy_hash` read straight from a file's data area with positioned reads (at most 64 KiB),
 * for when the data-area sha256 is already known and a full pass is not needed.
 * `dataLength` is the size of the data area; `readData(begin, length)` reads from it.
 */
export async function sshsLegacyHash(
	tensors: readonly LaidOutTensor[],
	metadata: Readonly<Record<string, string>>,
	dataLength: number,
	readData: (begin: number, length: number) => Promise<Uint8Array>,
): Promise<string> {
	const window = new LegacyWindow(sshsHeaderBytes(tensors, metadata));
	const begin = Math.max(0, window.begin);
	const end = Math.min(dataLength, window.end);
	if (end > begin) {
		window.update(await readData(begin, end - begin), begin);
	}

	return window.hash.digest('hex').slice(0, 8);
}

/** A tensor about to be written back to back in the given order (the writer's TensorToWrite shape). */
export type TensorBytes = {name: string; dtype: DType; shape: readonly number[]; data: Uint8Array | (() => Promise<Uint8Array>)};

/**
 * sshs hashes for a file about to be written with these tensors, in this order, back to back
 * (how writeSafetensorsAtomic lays them out), and this metadata (only its `ss_*` keys count).
 * Loaders are called once each, in order.
 */
export async function sshsHashesFor(tensors: readonly TensorBytes[], metadata: Readonly<Record<string, string>>): Promise<SshsHashes> {
	const laidOut: LaidOutTensor[] = [];
	let offset = 0;
	for (const tensor of tensors) {
		let elements = 1;
		for (const d of tensor.shape) {
			elements *= d;
		}

		const length = elements * dtypeSize[tensor.dtype];
		laidOut.push({name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, begin: offset, end: offset + length});
		offset += length;
	}

	const hasher = new SshsHasher(laidOut, metadata);
	for (const tensor of tensors) {
		hasher.update(typeof tensor.data === 'function' ? await tensor.data() : tensor.data);
	}

	return hasher.digest();
}

/** True for a lowercase/uppercase hex string of exactly this many digits. */
function isHex(value: string, digits: number): boolean {
	return value.length === digits && /^[\da-f]+$/i.test(value);
}

/**
 * Compare a stored hash with the computed one. "bogus" is a value that cannot be a real hash of
 * this file: the hash of nothing (when the file is not empty there), or not hex of the right length.
 */
export function hashStatus(stored: string | null | undefined, computed: string, alsoAccepted?: string): HashStatus {
	if (stored === null || stored === undefined) {
		return 'absent';
	}

	const normalized = stored.trim().toLowerCase();
	if (normalized === computed || normalized === alsoAccepted) {
		return 'verified';
	}

	if (!isHex(normalized, computed.length) || normalized === emptySha256.slice(0, computed.length)) {
		return 'bogus';
	}

	return 'stale';
}

/** Turn an aborted signal into the error it carries. */
function throwIfAborted(signal: AbortSignal | undefined): void {
	if (signal?.aborted) {
		throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
	}
}

/**
 * Hash a .safetensors file in one streaming read: full sha256, AutoV2, data-area sha256 and the
 * sd-scripts legacy hash, and compare the stored `sshs_*` values with them. Throws LoraFileError
 * for a file that is not a valid safetensors file or that changes while it is read.
 */
export async function computeFileHashes(filePath: string, options: HashOptions = {}): Promise<FileHashes> {
	const chunkBytes = options.chunkBytes ?? 4 * 1024 * 1024;
	const handle = await openForRead(filePath);
	try {
		const header: SafetensorsHeader = await readHeaderFromHandle(handle, filePath);
		const full = createHash('sha256');
		const sshs = new SshsHasher(header.tensors, header.metadata);
		const total = header.sizeBytes;
		const buffer = Buffer.allocUnsafe(Math.max(1, Math.min(chunkBytes, total)));
		let position = 0;
		while (position < total) {
			throwIfAborted(options.signal);
			const want = Math.min(buffer.length, total - position);
			const {bytesRead} = await handle.read(buffer, 0, want, position);
			if (bytesRead === 0) {
				throw new LoraFileError(filePath, `file ended at byte ${position} of ${total} while hashing (changed on disk)`);
			}

			const chunk = buffer.subarray(0, bytesRead);
			full.update(chunk);
			const dataStart = Math.max(position, header.dataOffset);
			if (position + bytesRead > dataStart) {
				sshs.update(chunk.subarray(dataStart - position));
			}

			position += bytesRead;
			options.onProgress?.({done: position, total, label: 'hashing'});
		}

		const after = await handle.stat();
		if (after.size !== header.sizeBytes || after.mtimeMs !== header.mtimeMs) {
			throw new LoraFileError(filePath, 'file changed on disk while it was hashed');
		}

		const sha256 = full.digest('hex');
		const {modelHash, legacyHash, legacyHashUnpadded} = sshs.digestAll();
		const storedModelHash = header.metadata['sshs_model_hash'] ?? null;
		const storedLegacyHash = header.metadata['sshs_legacy_hash'] ?? null;
		return {
			path: filePath,
			sizeBytes: header.sizeBytes,
			mtimeMs: header.mtimeMs,
			sha256,
			autov2: sha256.slice(0, 10),
			dataSha256: modelHash,
			legacyHash,
			storedModelHash,
			storedLegacyHash,
			modelHashStatus: hashStatus(storedModelHash, modelHash),
			// A file written by an older safetensors (unpadded header) has its window a few bytes earlier.
			legacyHashStatus: hashStatus(storedLegacyHash, legacyHash, legacyHashUnpadded),
		};
	} finally {
		await handle.close();
	}
}
