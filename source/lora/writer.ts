import {randomBytes} from 'node:crypto';
import {open, link, lstat, rename, unlink, readdir} from 'node:fs/promises';
import path from 'node:path';
import {dtypeSize, isDType} from './dtypes.js';
import type {DType, ProgressCallback} from './types.js';

export type TensorToWrite = {
	name: string;
	dtype: DType;
	shape: number[];
	/** Bytes, or a loader called once when the writer reaches this tensor (keeps memory bounded). */
	data: Uint8Array | (() => Promise<Uint8Array>);
};

/** Temporary files carry this marker so a later start can recognise and remove leftovers. */
export const tempMarker = '.lorascope-tmp-';

export function byteLength(tensor: Pick<TensorToWrite, 'dtype' | 'shape'>): number {
	let elements = 1;
	for (const d of tensor.shape) {
		elements *= d;
	}

	return elements * dtypeSize[tensor.dtype];
}

/**
 * Build the header bytes (length prefix + JSON padded with spaces to a multiple of 8, as the
 * reference implementation does) for tensors laid out back to back in the given order.
 */
export function serializeHeader(tensors: ReadonlyArray<Pick<TensorToWrite, 'name' | 'dtype' | 'shape'>>, metadata: Record<string, string> | undefined): Buffer {
	// Null prototypes: a tensor or metadata key named `__proto__` (possible in a hostile source
	// file) must become a key, not silently change the object's prototype and vanish.
	const object = Object.create(null) as Record<string, unknown>;
	if (metadata && Object.keys(metadata).length > 0) {
		const copy = Object.create(null) as Record<string, string>;
		for (const [key, value] of Object.entries(metadata)) {
			if (typeof value !== 'string') {
				throw new TypeError(`metadata value for key #${Object.keys(copy).length + 1} is ${typeof value}, not a string`);
			}

			copy[key] = value;
		}

		object['__metadata__'] = copy;
	}

	let offset = 0;
	for (const [index, tensor] of tensors.entries()) {
		if (tensor.name === '__metadata__' || Object.hasOwn(object, tensor.name)) {
			throw new Error(`tensor #${index + 1}: duplicate or reserved tensor name`);
		}

		if (!isDType(tensor.dtype) || !Array.isArray(tensor.shape) || tensor.shape.some(d => !Number.isSafeInteger(d) || d < 0)) {
			throw new Error(`tensor #${index + 1}: invalid dtype or shape`);
		}

		const length = byteLength(tensor);
		object[tensor.name] = {dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + length]};
		offset += length;
	}

	let json = Buffer.from(JSON.stringify(object), 'utf8');
	const padding = (8 - (json.length % 8)) % 8;
	if (padding > 0) {
		json = Buffer.concat([json, Buffer.alloc(padding, 0x20)]);
	}

	const prefix = Buffer.alloc(8);
	prefix.writeBigUInt64LE(BigInt(json.length));
	return Buffer.concat([prefix, json]);
}

export type AtomicWriteOptions = {
	/** Replace an existing file at the target. Without it an existing target is an error. */
	overwrite?: boolean;
	/** File mode of the result (e.g. the mode of the file being replaced). */
	mode?: number;
	onProgress?: ProgressCallback;
	/** Checked between tensors; an aborted write removes its temp file and leaves the target alone. */
	signal?: AbortSignal;
};

export class TargetExistsError extends Error {
	constructor(target: string) {
		super(`${path.basename(target)} already exists (choose another name or allow overwrite)`);
		this.name = 'TargetExistsError';
	}
}

export function tempPathFor(target: string): string {
	const directory = path.dirname(target);
	return path.join(directory, `.${path.basename(target)}${tempMarker}${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Write chunks to a temp file in the target's folder, fsync, then move it into place, so a
 * crash at any point leaves either the old file or the new one, never a torn one.
 */
export async function writeFileAtomic(
	target: string,
	chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
	options: AtomicWriteOptions = {},
): Promise<void> {
	const temporary = tempPathFor(target);
	const handle = await open(temporary, 'wx', options.mode ?? 0o644);
	let committed = false;
	try {
		for await (const chunk of chunks) {
			throwIfAborted(options.signal);

			let written = 0;
			while (written < chunk.byteLength) {
				const result = await handle.write(chunk, written, chunk.byteLength - written);
				written += result.bytesWritten;
			}
		}

		if (options.mode !== undefined) {
			await handle.chmod(options.mode);
		}

		await handle.sync();
		await handle.close();
		// Last chance to cancel: after this the new file is visible under the target name.
		throwIfAborted(options.signal);
		if (options.overwrite) {
			await rename(temporary, target);
		} else {
			const linked = await linkNoReplace(temporary, target);
			if (linked) {
				await unlink(temporary);
			}
		}

		committed = true;
		await syncDirectory(path.dirname(target));
	} finally {
		if (!committed) {
			await handle.close().catch(() => undefined);
			await unlink(temporary).catch(() => undefined);
		}
	}
}

function throwIfAborted(signal: AbortSignal | undefined): void {
	if (signal?.aborted) {
		throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
	}
}

/**
 * Give the finished temp file the target name without replacing an existing file. link()
 * refuses an existing name atomically (rename() would replace it silently); on filesystems
 * without hard links (FAT, some network and FUSE mounts) fall back to check-then-rename.
 */
async function linkNoReplace(temporary: string, target: string): Promise<boolean> {
	try {
		await link(temporary, target);
		return true;
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code === 'EEXIST') {
			throw new TargetExistsError(target);
		}

		if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EMLINK') {
			throw error;
		}
	}

	const exists = await lstat(target).then(() => true, () => false);
	if (exists) {
		throw new TargetExistsError(target);
	}

	await rename(temporary, target);
	return false;
}

async function syncDirectory(directory: string): Promise<void> {
	try {
		const handle = await open(directory, 'r');
		try {
			await handle.sync();
		} finally {
			await handle.close();
		}
	} catch {
		// Some filesystems refuse fsync on directories; the rename itself is still atomic.
	}
}

/** Write a safetensors file atomically. Tensor loaders are awaited one at a time. */
export async function writeSafetensorsAtomic(
	target: string,
	tensors: readonly TensorToWrite[],
	metadata: Record<string, string> | undefined,
	options: AtomicWriteOptions = {},
): Promise<void> {
	const header = serializeHeader(tensors, metadata);
	const total = tensors.reduce((sum, t) => sum + byteLength(t), 0);
	async function * chunks(): AsyncGenerator<Uint8Array> {
		yield header;
		let done = 0;
		for (const tensor of tensors) {
			const data = typeof tensor.data === 'function' ? await tensor.data() : tensor.data;
			const expected = byteLength(tensor);
			if (data.byteLength !== expected) {
				throw new Error(`tensor ${tensor.name}: ${data.byteLength} bytes for shape ${JSON.stringify(tensor.shape)} ${tensor.dtype} (expected ${expected})`);
			}

			yield data;
			done += expected;
			options.onProgress?.({done, total, label: tensor.name});
		}
	}

	await writeFileAtomic(target, chunks(), options);
}

/** A temp file untouched this long is abandoned even if its writer's pid now belongs to someone else. */
const abandonedAfterMs = 24 * 60 * 60 * 1000;

/**
 * Remove temp files left in a folder by a killed writer (they carry `tempMarker`): those whose
 * writer process is gone and that are at least `olderThanMs` old, and any untouched for a day.
 */
export async function cleanStaleTempFiles(directory: string, olderThanMs = 60_000): Promise<string[]> {
	const removed: string[] = [];
	let names: string[];
	try {
		names = await readdir(directory);
	} catch {
		return removed;
	}

	const now = Date.now();
	for (const name of names) {
		if (!name.includes(tempMarker)) {
			continue;
		}

		const full = path.join(directory, name);
		try {
			const info = await lstat(full);
			if (!info.isFile()) {
				continue;
			}

			const pidMatch = /-tmp-(\d+)-/.exec(name);
			const ownerAlive = pidMatch ? isProcessAlive(Number(pidMatch[1])) : false;
			const age = now - info.mtimeMs;
			if ((!ownerAlive && age >= olderThanMs) || age >= abandonedAfterMs) {
				await unlink(full);
				removed.push(full);
			}
		} catch {
			// Gone already, or not ours to remove.
		}
	}

	return removed;
}

function isProcessAlive(pid: number): boolean {
	if (pid === process.pid) {
		return true;
	}

	try {
		process.kill(pid, 0);
		return true;
	} catch (error) {
		return (error as NodeJS.ErrnoException).code === 'EPERM';
	}
}
