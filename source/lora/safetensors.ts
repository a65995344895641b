import {isUtf8} from 'node:buffer';
import {closeSync, constants, fstatSync, openSync, readSync} from 'node:fs';
import {open, type FileHandle} from 'node:fs/promises';
import path from 'node:path';
import {decodeToFloat32} from './dtypes.js';
import {HeaderFormatError, parseHeaderJson} from './header-json.js';
import type {FileKind, SafetensorsHeader, TensorInfo} from './types.js';

/** Headers above this are refused before allocating: real LoRA headers are < 1 MB. */
export const maxHeaderBytes = 100 * 1024 * 1024;

/**
 * Make text from outside (file names, other libraries' messages) safe for one terminal line:
 * C0/C1 controls, DEL, line/paragraph separators and bidi controls become `\x..`/`\u{..}`.
 */
export function oneLine(text: string, limit = 300): string {
	const escaped = text.replaceAll(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/gu, char => {
		const code = char.codePointAt(0)!;
		return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
	});
	return escaped.length > limit ? `${escaped.slice(0, limit - 1)}…` : escaped;
}

/**
 * A file that could not be read as a LoRA. `reason` is one line, safe to show as is
 * (it never embeds file content, only numbers and fixed words). `message` adds the file's
 * base name with control characters escaped (file names are untrusted too).
 */
export class LoraFileError extends Error {
	readonly filePath: string;
	readonly reason: string;

	constructor(filePath: string, reason: string) {
		super(`${oneLine(path.basename(filePath), 120)}: ${reason}`);
		this.name = 'LoraFileError';
		this.filePath = filePath;
		this.reason = reason;
	}
}

/** Extensions of PyTorch pickle containers: never unpickled, only recognised. */
const pickleExtensions = new Set(['.ckpt', '.pt', '.pth', '.bin']);

/**
 * What the first bytes (at least 9 when the file has them) say the file is. Content wins over
 * the extension: a valid safetensors named `.bin` is read; a pickle named `.safetensors` is not.
 */
export function sniffFileKind(head: Uint8Array, filePath = ''): FileKind {
	if (head.length === 0) {
		return 'empty';
	}

	const text = Buffer.from(head.subarray(0, 24)).toString('latin1');
	if (text.startsWith('version https://git-lfs')) {
		return 'lfs-pointer';
	}

	// A safetensors header length below 4 GiB followed by '{'. Checked before the pickle magic
	// because a header of 640 bytes starts 0x80 0x02, which is also pickle protocol 2's PROTO.
	if (head.length >= 9 && head[8] === 0x7b /* '{' */ && head[4] === 0 && head[5] === 0 && head[6] === 0 && head[7] === 0) {
		return 'safetensors';
	}

	if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
		return 'pickle-zip';
	}

	// Pickle protocol 2+ starts with PROTO (0x80) and the protocol number.
	if (head[0] === 0x80 && head[1] !== undefined && head[1] >= 2 && head[1] <= 5) {
		return 'pickle';
	}

	if (pickleExtensions.has(path.extname(filePath).toLowerCase())) {
		return 'pickle';
	}

	return head.length < 8 ? 'unknown' : 'safetensors';
}

function describeKind(kind: FileKind): string | undefined {
	switch (kind) {
		case 'lfs-pointer': {
			return 'Git LFS pointer, not the file itself (run git lfs pull)';
		}

		case 'pickle-zip': {
			return 'PyTorch zip/pickle file; pickles are never unpickled (convert it to .safetensors)';
		}

		case 'pickle': {
			return 'pickle file; pickles are never unpickled (convert it to .safetensors)';
		}

		case 'empty': {
			return 'empty file';
		}

		default: {
			return undefined;
		}
	}
}

/**
 * Parse and validate a safetensors header from its raw bytes. `fileSize` bounds every offset.
 * Throws LoraFileError with a one-line reason.
 */
export function parseHeaderBytes(
	filePath: string,
	headerBytes: Uint8Array,
	fileSize: number,
	mtimeMs: number,
): SafetensorsHeader {
	const headerLength = headerBytes.length;
	if (!isUtf8(headerBytes)) {
		throw new LoraFileError(filePath, 'header is not valid UTF-8');
	}

	const dataOffset = 8 + headerLength;
	let parsed;
	try {
		parsed = parseHeaderJson(headerBytes, Math.max(0, fileSize - dataOffset));
	} catch (error) {
		if (error instanceof HeaderFormatError) {
			throw new LoraFileError(filePath, error.message);
		}

		throw error;
	}

	return {
		path: filePath,
		sizeBytes: fileSize,
		mtimeMs,
		headerLength,
		dataOffset,
		tensors: parsed.tensors,
		byName: parsed.byName,
		metadata: parsed.metadata,
	};
}

/**
 * Reads into `buffer` from `position` until at least `minimum` bytes are in (more when one read
 * brings them, up to the buffer's length) and returns how many. A file that ends first, or an OS
 * error, is a one-line LoraFileError; `whole` names the larger read this one is part of, for that
 * message.
 */
async function readAtLeast(handle: ByteSource, buffer: Buffer, minimum: number, position: number, filePath: string, whole = {length: minimum, position}): Promise<number> {
	let filled = 0;
	while (filled < minimum) {
		let bytesRead: number;
		try {
			({bytesRead} = await handle.read(buffer, filled, buffer.length - filled, position + filled));
		} catch (error) {
			throw new LoraFileError(filePath, errnoReason(error));
		}

		if (bytesRead === 0) {
			throw new LoraFileError(filePath, `file ended at byte ${position + filled} while reading ${whole.length} bytes at ${whole.position} (truncated or being written)`);
		}

		filled += bytesRead;
	}

	return filled;
}

/** Reads exactly `length` bytes at `position`, into `target` (its first `length` bytes) when given. */
async function readExactly(handle: FileHandle, length: number, position: number, filePath: string, target?: Buffer): Promise<Buffer> {
	const buffer = target ? target.subarray(0, length) : Buffer.allocUnsafe(length);
	await readAtLeast(handle, buffer, length, position, filePath);
	return buffer;
}

/**
 * Size of the first read of a header: about the length plus header of the last files read (a
 * folder holds files of a few kinds), at least 64 KiB, at most 1 MiB. One read after the fstat
 * then fetches both, instead of a read for the length and another for the header (each round
 * trip costs most on network filesystems).
 */
let firstReadBytes = 64 * 1024;

/** One-line reason for an OS error (ENOENT, EACCES, ELOOP...), shared by every reader of files. */
export function errnoReason(error: unknown): string {
	const code = (error as NodeJS.ErrnoException | undefined)?.code;
	switch (code) {
		case 'ENOENT': {
			return 'file not found';
		}

		case 'EACCES':
		case 'EPERM': {
			return 'permission denied';
		}

		case 'EISDIR': {
			return 'is a directory';
		}

		case 'ELOOP': {
			return 'symbolic link loop';
		}

		default: {
			return code ? `cannot read (${code})` : 'cannot read';
		}
	}
}

/**
 * Open a file handle, turning OS errors into one-line LoraFileErrors. O_NONBLOCK keeps a FIFO
 * named `*.safetensors` from blocking the open forever (it has no effect on regular files).
 */
export async function openForRead(filePath: string): Promise<FileHandle> {
	try {
		return await open(filePath, constants.O_RDONLY | constants.O_NONBLOCK);
	} catch (error) {
		throw new LoraFileError(filePath, errnoReason(error));
	}
}

/**
 * Read and validate only the header of a .safetensors file: 8 bytes of length, then N bytes of JSON.
 * Tensor data is never touched.
 */
export async function readHeader(filePath: string, options: {blocking?: boolean} = {}): Promise<SafetensorsHeader> {
	const handle = options.blocking ? openBlocking(filePath) : await openForRead(filePath);
	try {
		return await readHeaderFromHandle(handle, filePath);
	} finally {
		await handle.close();
	}
}

/** What the header reader needs of an open file: a FileHandle, or blocking calls on a descriptor. */
export type ByteSource = {
	stat(): Promise<{size: number; mtimeMs: number; isFile(): boolean; isDirectory(): boolean}>;
	read(buffer: Buffer, offset: number, length: number, position: number): Promise<{bytesRead: number}>;
	close(): Promise<void>;
};

/**
 * A ByteSource on blocking system calls, for worker threads that read many headers (header-pool.ts):
 * each FileHandle call is a round trip through libuv's thread pool, and the four of a header
 * (open, fstat, read, close) cost ~300 µs there against ~60 µs made directly. Never use it on the
 * main thread, where a slow disk would freeze the screen.
 */
function openBlocking(filePath: string): ByteSource {
	let fd: number;
	try {
		fd = openSync(filePath, constants.O_RDONLY | constants.O_NONBLOCK);
	} catch (error) {
		throw new LoraFileError(filePath, errnoReason(error));
	}

	return {
		stat: async () => fstatSync(fd),
		read: async (buffer, offset, length, position) => ({bytesRead: readSync(fd, buffer, offset, length, position)}),
		async close() {
			closeSync(fd);
		},
	};
}

export async function readHeaderFromHandle(handle: ByteSource, filePath: string): Promise<SafetensorsHeader> {
	// fstat before any read: reading a FIFO, socket or terminal device named *.safetensors would
	// take bytes meant for someone else (a link to /dev/tty would eat the user's keys).
	let stats;
	try {
		stats = await handle.stat();
	} catch (error) {
		throw new LoraFileError(filePath, errnoReason(error));
	}

	if (stats.isDirectory()) {
		throw new LoraFileError(filePath, 'is a directory');
	}

	if (!stats.isFile()) {
		throw new LoraFileError(filePath, 'not a regular file (device, FIFO or socket)');
	}

	const size = Math.min(stats.size, firstReadBytes);
	const owned = spareFirstRead && spareFirstRead.length >= size ? spareFirstRead : Buffer.allocUnsafe(size);
	spareFirstRead = undefined;
	try {
		return await readHeaderWith(handle, filePath, stats, owned.subarray(0, size));
	} finally {
		if (owned.length <= maxFirstReadBytes) {
			spareFirstRead = owned;
		}
	}
}

const maxFirstReadBytes = 1024 * 1024;

/**
 * The buffer of the last first read, lent to one header read at a time. Parsing copies out all it
 * keeps, and a fresh ~130 KB buffer per file cost page faults and GC work on every header.
 */
let spareFirstRead: Buffer | undefined;

async function readHeaderWith(handle: ByteSource, filePath: string, stats: {size: number; mtimeMs: number}, first: Buffer): Promise<SafetensorsHeader> {
	const fileSize = stats.size;
	const headLength = Math.min(fileSize, 32);
	// Usually one read brings the head and the whole header.
	const got = Math.min(await readAtLeast(handle, first, headLength, 0, filePath), fileSize);

	const head = first.subarray(0, headLength);
	const kind = sniffFileKind(head, filePath);
	const kindReason = describeKind(kind);
	if (kindReason) {
		throw new LoraFileError(filePath, kindReason);
	}

	if (fileSize < 8) {
		throw new LoraFileError(filePath, `file is ${fileSize} bytes, too short for a safetensors header`);
	}

	const declared = head.readBigUInt64LE(0);
	if (declared < 2n) {
		throw new LoraFileError(filePath, `header length ${declared} is too small`);
	}

	if (declared > BigInt(maxHeaderBytes)) {
		throw new LoraFileError(filePath, `header length ${declared} exceeds the ${maxHeaderBytes / 1024 / 1024} MB limit`);
	}

	const headerLength = Number(declared);
	if (headerLength > fileSize - 8) {
		throw new LoraFileError(filePath, `header length ${headerLength} is larger than the file (${fileSize} bytes)`);
	}

	// Grow at once to a larger header, shrink slowly: a folder mixing kinds of files then settles
	// on the size of its largest headers instead of reading twice for every other file.
	const needed = Math.ceil((8 + headerLength) / 4096) * 4096;
	const settled = needed >= firstReadBytes ? needed : firstReadBytes - (Math.floor((firstReadBytes - needed) / 8 / 4096) * 4096);
	firstReadBytes = Math.min(maxFirstReadBytes, Math.max(64 * 1024, settled));
	let headerBytes: Buffer;
	if (8 + headerLength <= got) {
		headerBytes = first.subarray(8, 8 + headerLength);
	} else {
		headerBytes = Buffer.allocUnsafe(headerLength);
		first.copy(headerBytes, 0, 8, got);
		const rest = headerBytes.subarray(got - 8);
		await readAtLeast(handle, rest, rest.length, got, filePath, {length: headerLength, position: 8});
	}

	return parseHeaderBytes(filePath, headerBytes, fileSize, stats.mtimeMs);
}

/**
 * Positioned, lazy tensor reads from one open file. Each read fetches only that tensor's bytes.
 */
export class TensorReader {
	/**
	 * Open the header's file for tensor reads. Refuses a file whose size changed since the header
	 * was read (replaced or truncated meanwhile), since the offsets would point at other bytes.
	 */
	static async open(header: SafetensorsHeader): Promise<TensorReader> {
		const handle = await openForRead(header.path);
		let size: number;
		try {
			size = (await handle.stat()).size;
		} catch (error) {
			await handle.close().catch(() => undefined);
			throw new LoraFileError(header.path, errnoReason(error));
		}

		if (size !== header.sizeBytes) {
			await handle.close().catch(() => undefined);
			throw new LoraFileError(header.path, `file changed since its header was read (${header.sizeBytes} → ${size} bytes)`);
		}

		return new TensorReader(header, handle);
	}

	readonly header: SafetensorsHeader;
	private readonly handle: FileHandle;

	private constructor(header: SafetensorsHeader, handle: FileHandle) {
		this.header = header;
		this.handle = handle;
	}

	info(name: string): TensorInfo {
		const info = this.header.byName.get(name);
		if (!info) {
			throw new LoraFileError(this.header.path, `no tensor named ${JSON.stringify(name.slice(0, 80))}`);
		}

		return info;
	}

	/** Raw little-endian bytes of one tensor. */
	async readRaw(name: string): Promise<Buffer> {
		const info = this.info(name);
		return readExactly(this.handle, info.end - info.begin, this.header.dataOffset + info.begin, this.header.path);
	}

	/** One tensor decoded to float32. */
	async read(name: string): Promise<Float32Array> {
		const info = this.info(name);
		return decodeToFloat32(await this.readRaw(name), info.dtype);
	}

	/**
	 * Raw bytes of several tensors by name. Tensors that lie close together come from one read
	 * (gaps up to `maxGap` bytes, spans up to 4 MiB): kohya files hold a scalar alpha beside every
	 * module, and a read per alpha cost a few hundred round trips per file (~20 ms).
	 */
	async readMany(names: readonly string[], maxGap = 128 * 1024): Promise<Map<string, Buffer>> {
		const infos = names.map(name => this.info(name)).sort((a, b) => a.begin - b.begin);
		const out = new Map<string, Buffer>();
		for (let first = 0; first < infos.length;) {
			const start = infos[first]!.begin;
			let end = infos[first]!.end;
			let last = first;
			while (last + 1 < infos.length && infos[last + 1]!.begin - end <= maxGap && infos[last + 1]!.end - start <= maxSpanBytes) {
				last++;
				end = Math.max(end, infos[last]!.end);
			}

			const span = await this.readDataRange(start, end - start);
			for (let i = first; i <= last; i++) {
				out.set(infos[i]!.name, span.subarray(infos[i]!.begin - start, infos[i]!.end - start));
			}

			first = last + 1;
		}

		return out;
	}

	/** A byte range of the data area; with `into` (at least `length` bytes) it is read there, not copied. */
	async readDataRange(begin: number, length: number, into?: Buffer): Promise<Buffer> {
		const dataSize = this.header.sizeBytes - this.header.dataOffset;
		if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(length) || begin < 0 || length < 0 || begin + length > dataSize) {
			throw new LoraFileError(this.header.path, `byte range ${begin}+${length} is outside the data area (${dataSize} bytes)`);
		}

		if (into && into.length < length) {
			throw new RangeError(`readDataRange: a ${into.length}-byte buffer cannot hold ${length} bytes`);
		}

		return readExactly(this.handle, length, this.header.dataOffset + begin, this.header.path, into);
	}

	async close(): Promise<void> {
		await this.handle.close();
	}
}

/** Largest span TensorReader#readMany reads at once. */
const maxSpanBytes = 4 * 1024 * 1024;

/** Convenience for one-off reads: open, read one tensor, close. */
export async function readTensor(header: SafetensorsHeader, name: string): Promise<Float32Array> {
	const reader = await TensorReader.open(header);
	try {
		return await reader.read(name);
	} finally {
		await reader.close();
	}
}

/** One safe line describing any thrown value (control characters escaped). */
export function errorReason(error: unknown): string {
	if (error instanceof LoraFileError) {
		return error.reason;
	}

	if (error instanceof Error) {
		return oneLine(error.message.split('\n')[0] || error.name || 'unknown error');
	}

	return oneLine(String(error).split('\n')[0] ?? '');
}
