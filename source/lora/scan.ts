// Folder scan for LoRA candidates: `.safetensors` files plus the pickle containers users keep
// next to them (`.ckpt .pt .pth .bin`), which are listed so they can be reported (never unpickled).
// Symlinked folders are followed once (loops are cut by device+inode), unreadable folders are
// reported through onError and skipped, and the writer's own temp files are ignored.
import {opendir, stat} from 'node:fs/promises';
import path from 'node:path';
import {errnoReason} from './safetensors.js';
import {compareCodePoints} from './stats.js';
import {tempMarker} from './writer.js';

export const loraExtensions: readonly string[] = ['.safetensors'];
export const pickleExtensions: readonly string[] = ['.ckpt', '.pt', '.pth', '.bin'];

const candidateExtensions = new Set([...loraExtensions, ...pickleExtensions]);

export type ScanOptions = {
	/** Descend into subfolders (default true). */
	recursive?: boolean;
	/** Follow symbolic links to folders (default true; each real folder is visited once). */
	followSymlinks?: boolean;
	/** Deepest folder level visited below the root (default 32). */
	maxDepth?: number;
	/** A folder or entry that could not be read, with a one-line reason. */
	onError?: (filePath: string, reason: string) => void;
	signal?: AbortSignal;
};

export function isCandidateFile(name: string): boolean {
	return candidateExtensions.has(path.extname(name).toLowerCase()) && !name.includes(tempMarker);
}

function reasonOf(error: unknown): string {
	const code = (error as NodeJS.ErrnoException | undefined)?.code;
	switch (code) {
		case 'EACCES':
		case 'EPERM': {
			return 'permission denied';
		}

		case 'ENOENT': {
			return 'not found';
		}

		case 'ELOOP': {
			return 'symbolic link loop';
		}

		case 'ENOTDIR': {
			return 'not a folder';
		}

		default: {
			return code ? `cannot read (${code})` : 'cannot read';
		}
	}
}

/**
 * Candidate files under `root`, depth first, each folder's entries in code-point order. A `root`
 * that is a file is yielded as is (whatever its extension: the user named it).
 */
export async function * scanFolder(root: string, options: ScanOptions = {}): AsyncGenerator<string> {
	const recursive = options.recursive ?? true;
	const followSymlinks = options.followSymlinks ?? true;
	const maxDepth = options.maxDepth ?? 32;
	let rootStat;
	try {
		rootStat = await stat(root);
	} catch (error) {
		options.onError?.(root, reasonOf(error));
		return;
	}

	if (!rootStat.isDirectory()) {
		yield root;
		return;
	}

	// Every real folder is listed once: a symlink back up the tree (a loop) or to a folder seen
	// elsewhere is cut when its device+inode was visited already.
	const visited = new Set<string>();
	const stack: Array<{dir: string; depth: number}> = [{dir: root, depth: 0}];
	while (stack.length > 0) {
		if (options.signal?.aborted) {
			return;
		}

		const {dir, depth} = stack.pop()!;
		const files: string[] = [];
		const folders: string[] = [];
		try {
			const info = await stat(dir);
			const id = `${info.dev}:${info.ino}`;
			if (visited.has(id)) {
				continue;
			}

			visited.add(id);
			const handle = await opendir(dir);
			for await (const entry of handle) {
				const full = path.join(dir, entry.name);
				if (entry.isFile()) {
					if (isCandidateFile(entry.name)) {
						files.push(full);
					}
				} else if (entry.isDirectory()) {
					if (recursive && depth < maxDepth && entry.name !== '.git') {
						folders.push(full);
					}
				} else if (entry.isSymbolicLink()) {
					let target;
					try {
						target = await stat(full);
					} catch (error) {
						// A dangling link named like a LoRA is still listed, so it gets reported.
						if (isCandidateFile(entry.name)) {
							files.push(full);
						} else if (recursive) {
							options.onError?.(full, reasonOf(error));
						}

						continue;
					}

					if (target.isFile()) {
						if (isCandidateFile(entry.name)) {
							files.push(full);
						}
					} else if (target.isDirectory() && followSymlinks && recursive && depth < maxDepth) {
						folders.push(full);
					}
				} else if (isCandidateFile(entry.name)) {
					// A FIFO, socket or device named like a LoRA: listed so the reader reports it
					// ("not a regular file"); the reader opens it non-blocking and never reads it.
					files.push(full);
				}
			}
		} catch (error) {
			options.onError?.(dir, reasonOf(error));
			continue;
		}

		files.sort(compareCodePoints);
		yield * files;
		folders.sort(compareCodePoints);
		for (let i = folders.length - 1; i >= 0; i--) {
			stack.push({dir: folders[i]!, depth: depth + 1});
		}
	}
}

/** Every candidate under each path, deduplicated, in code-point order of the full path. */
export async function listLoraFiles(paths: readonly string[], options: ScanOptions = {}): Promise<string[]> {
	const found = new Set<string>();
	for (const root of paths) {
		for await (const file of scanFolder(root, options)) {
			found.add(file);
		}
	}

	return [...found].sort(compareCodePoints);
}

/**
 * Files named on the command line with folders scanned recursively, each once, in the order given;
 * paths that cannot be read (and unreadable subfolders) come back with a one-line `error`.
 */
export async function expandCommandPaths(paths: readonly string[]): Promise<Array<{path: string; error?: string}>> {
	const result: Array<{path: string; error?: string}> = [];
	const seen = new Set<string>();
	const add = (item: {path: string; error?: string}) => {
		const key = path.resolve(item.path);
		if (!seen.has(key)) {
			seen.add(key);
			result.push(item);
		}
	};

	for (const given of paths) {
		let info;
		try {
			info = await stat(given);
		} catch (error) {
			add({path: given, error: errnoReason(error)});
			continue;
		}

		if (!info.isDirectory()) {
			add({path: given});
			continue;
		}

		const errors: Array<{path: string; error: string}> = [];
		for await (const file of scanFolder(given, {onError: (p, reason) => errors.push({path: p, error: reason})})) {
			add({path: file});
		}

		for (const error of errors) {
			add(error);
		}
	}

	return result;
}
