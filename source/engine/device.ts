// Which onnxruntime execution provider the engine may use. Asking onnxruntime for
// ['cuda', 'cpu'] without the CUDA provider libraries throws and prints from native code, so the
// files are checked first: the provider library next to the binding, and every shared library it
// links against (read from its ELF dynamic section) findable by the dynamic loader.
import {execFileSync} from 'node:child_process';
import {existsSync, readFileSync, readdirSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import process from 'node:process';
import type {Device, DevicePreference} from './protocol.js';

export type DeviceChoice = {
	device: Device;
	/** One line for the UI and --json: which provider runs and why. */
	detail: string;
};

export type CudaCheck = {available: boolean; reason: string; providerPath?: string};

export class DeviceUnavailableError extends Error {
	readonly reason: string;
	constructor(reason: string) {
		super(`CUDA requested but unavailable: ${reason}`);
		this.name = 'DeviceUnavailableError';
		this.reason = this.message;
	}
}

export function isDevicePreference(value: unknown): value is DevicePreference {
	return value === 'auto' || value === 'cpu' || value === 'cuda';
}

/** Folder holding onnxruntime_binding.node for this platform, or null when the package is missing. */
export function ortBinaryFolder(): string | null {
	try {
		const require = createRequire(import.meta.url);
		const packageJson = require.resolve('onnxruntime-node/package.json');
		return path.join(path.dirname(packageJson), 'bin', 'napi-v6', process.platform, process.arch);
	} catch {
		return null;
	}
}

/** DT_NEEDED entries of a 64-bit little-endian ELF shared object; null when it cannot be parsed. */
export function elfNeededLibraries(bytes: Uint8Array): string[] | null {
	const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
	const isElf64Le = bytes.length > 64 && view.getUint32(0, false) === 0x7F_45_4C_46 && bytes[4] === 2 && bytes[5] === 1;
	if (!isElf64Le) {
		return null;
	}

	const sectionOffset = Number(view.getBigUint64(0x28, true));
	const sectionSize = view.getUint16(0x3A, true);
	const sectionCount = view.getUint16(0x3C, true);
	const section = (index: number) => {
		const base = sectionOffset + (index * sectionSize);
		if (base + 0x40 > bytes.length) {
			return null;
		}

		return {
			type: view.getUint32(base + 4, true),
			offset: Number(view.getBigUint64(base + 0x18, true)),
			size: Number(view.getBigUint64(base + 0x20, true)),
			link: view.getUint32(base + 0x28, true),
		};
	};

	for (let index = 0; index < sectionCount; index++) {
		const dynamic = section(index);
		// SHT_DYNAMIC
		if (dynamic?.type !== 6) {
			continue;
		}

		const strings = section(dynamic.link);
		if (!strings || dynamic.offset + dynamic.size > bytes.length) {
			return null;
		}

		const needed: string[] = [];
		for (let entry = dynamic.offset; entry + 16 <= dynamic.offset + dynamic.size; entry += 16) {
			const tag = view.getBigInt64(entry, true);
			if (tag === 0n) {
				break;
			}

			// DT_NEEDED
			if (tag === 1n) {
				const start = strings.offset + Number(view.getBigUint64(entry + 8, true));
				let end = start;
				while (end < bytes.length && bytes[end] !== 0) {
					end++;
				}

				needed.push(Buffer.from(bytes.subarray(start, end)).toString('utf8'));
			}
		}

		return needed;
	}

	return null;
}

/** Library names the dynamic loader knows through its cache (ldconfig -p); empty when unavailable. */
function loaderCacheNames(): Set<string> {
	for (const ldconfig of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
		try {
			const text = execFileSync(ldconfig, ['-p'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000});
			const names = new Set<string>();
			for (const line of text.split('\n')) {
				const match = /^\s*(\S+)\s/.exec(line);
				if (match?.[1]) {
					names.add(match[1]);
				}
			}

			return names;
		} catch {
			// Try the next location.
		}
	}

	return new Set();
}

function searchFolders(bindingFolder: string): string[] {
	const folders = [bindingFolder];
	for (const variable of ['LD_LIBRARY_PATH', 'CUDA_PATH', 'CUDA_HOME']) {
		const value = process.env[variable];
		if (!value) {
			continue;
		}

		for (const entry of value.split(':').filter(Boolean)) {
			folders.push(entry, path.join(entry, 'lib64'), path.join(entry, 'lib'));
		}
	}

	folders.push('/usr/local/cuda/lib64', '/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib');
	return folders;
}

// Libraries every Linux process has; not worth reporting.
const systemLibrary = /^(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux.*)\.so/;

/** Whether the onnxruntime CUDA provider can be loaded here, without asking onnxruntime. */
export function checkCuda(): CudaCheck {
	if (process.platform !== 'linux' && process.platform !== 'win32') {
		return {available: false, reason: `no CUDA build of onnxruntime for ${process.platform}`};
	}

	const folder = ortBinaryFolder();
	if (!folder) {
		return {available: false, reason: 'onnxruntime-node is not installed'};
	}

	const providerName = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
	const providerPath = path.join(folder, providerName);
	if (!existsSync(providerPath)) {
		return {available: false, reason: `${providerName} is not installed (run npm run install-cuda on a machine with internet)`};
	}

	if (process.platform === 'win32') {
		return {available: true, reason: 'CUDA provider present', providerPath};
	}

	const sharedPath = path.join(folder, 'libonnxruntime_providers_shared.so');
	if (!existsSync(sharedPath)) {
		return {available: false, reason: 'libonnxruntime_providers_shared.so is missing next to the CUDA provider', providerPath};
	}

	let needed: string[] | null;
	try {
		needed = elfNeededLibraries(readFileSync(providerPath));
	} catch (error) {
		return {available: false, reason: `cannot read ${providerName}: ${(error as Error).message.split('\n')[0] ?? ''}`, providerPath};
	}

	if (!needed) {
		return {available: false, reason: `cannot parse ${providerName}`, providerPath};
	}

	// The driver library is loaded at run time by libcudart rather than linked, so check it too.
	const required = [...new Set([...needed.filter(name => !systemLibrary.test(name)), 'libcuda.so.1'])];
	const cache = loaderCacheNames();
	const folders = searchFolders(folder);
	const missing = required.filter(name => !cache.has(name) && !folders.some(f => existsSync(path.join(f, name))));
	if (missing.length > 0) {
		return {available: false, reason: `CUDA libraries not found: ${missing.join(', ')}`, providerPath};
	}

	return {available: true, reason: `CUDA provider and ${required.length} libraries found`, providerPath};
}

/** Resolves --device. 'cuda' without the libraries throws DeviceUnavailableError; 'auto' falls back to CPU with a reason. */
export function resolveDevice(preference: DevicePreference = 'auto', check: () => CudaCheck = checkCuda): DeviceChoice {
	if (preference === 'cpu') {
		return {device: 'cpu', detail: 'cpu (requested)'};
	}

	const cuda = check();
	if (cuda.available) {
		return {device: 'cuda', detail: `cuda (${cuda.reason})`};
	}

	if (preference === 'cuda') {
		throw new DeviceUnavailableError(cuda.reason);
	}

	return {device: 'cpu', detail: `cpu (cuda unavailable: ${cuda.reason})`};
}

/** Lists the provider folder, for diagnostics in the log. */
export function describeOrtFolder(): string {
	const folder = ortBinaryFolder();
	if (!folder) {
		return 'onnxruntime-node not installed';
	}

	try {
		return `${folder}: ${readdirSync(folder).join(', ')}`;
	} catch {
		return `${folder}: unreadable`;
	}
}
