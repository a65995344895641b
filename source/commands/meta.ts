// `lorascope meta get|set|rm|export|import`: read and edit a LoRA's metadata from the shell.
// Every save goes through saveMetadata (header-only rewrite, atomic, hashes recomputed).
// Exit codes: 0 done, 1 a file could not be read or saved, 2 usage error.
import {mkdir, readFile, stat} from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import {parseArgs} from 'node:util';
import {
	exportFileName, exportMetadata, importMetadata, removeKey, saveMetadata, setKey, type SaveMetadataResult,
} from '../lora/edit.js';
import {errorReason, readHeader} from '../lora/safetensors.js';
import {expandCommandPaths} from '../lora/scan.js';
import {prettyJson, sanitizeLine, sanitizeText} from '../lora/sanitize.js';
import {cleanStaleTempFiles, writeFileAtomic} from '../lora/writer.js';

const usage = `Usage:
  lorascope meta get <file> [key] [--json] [--pretty]
  lorascope meta set <file> --key K --value V [--backup] [-o out.safetensors]
  lorascope meta rm <file> --key K [--backup] [-o out.safetensors]
  lorascope meta export <file-or-dir>... [-o dir]  (writes <dir>/<name>.json; dir defaults to ./meta;
                                                 folders are scanned recursively)
  lorascope meta import <file> <json> [--backup] [-o out.safetensors]

Saves rewrite only the header (tensor bytes are copied and checked), replace the file atomically,
keep its mode and recompute sshs_model_hash / sshs_legacy_hash when present.
`;

class UsageError extends Error {}

/**
 * JSON text that is safe to print: JSON.stringify escapes C0 controls but not DEL, C1 controls,
 * bidi or other invisible format characters; those become \\uXXXX escapes (same JSON value).
 */
export function jsonForTerminal(value: unknown, indent?: number): string {
	return JSON.stringify(value, null, indent).replaceAll(
		/[\u007F-\u009F\u00AD\u061C\u180E\u200B-\u200F\u2028-\u202E\u2060-\u206F\uFEFF\uFFF9-\uFFFB]/g,
		ch => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
	);
}

function out(text: string): void {
	process.stdout.write(text);
}

function fail(file: string, reason: string): void {
	process.stderr.write(`lorascope meta: ${sanitizeLine(file, 200)}: ${sanitizeLine(reason, 400)}\n`);
}

function describeSave(file: string, action: string, result: SaveMetadataResult): string {
	const parts = [`${sanitizeLine(path.basename(result.path), 120)}: ${action}`];
	if (result.hashes) {
		parts.push(`sshs hashes recomputed (model ${result.hashes.modelHash.slice(0, 12)}…, legacy ${result.hashes.legacyHash})`);
	}

	if (result.backupPath) {
		parts.push(`backup ${sanitizeLine(path.basename(result.backupPath), 120)}`);
	}

	if (result.path !== path.resolve(file)) {
		parts.push(`written to ${sanitizeLine(result.path, 200)}`);
	}

	return `${parts.join('; ')}\n`;
}

type Flags = {
	key?: string;
	value?: string;
	backup?: boolean;
	output?: string;
	json?: boolean;
	pretty?: boolean;
	help?: boolean;
};

function parse(argv: string[]): {positionals: string[]; flags: Flags} {
	try {
		const {positionals, values} = parseArgs({
			args: argv,
			allowPositionals: true,
			strict: true,
			options: {
				key: {type: 'string', short: 'k'},
				value: {type: 'string', short: 'v'},
				backup: {type: 'boolean'},
				output: {type: 'string', short: 'o'},
				json: {type: 'boolean'},
				pretty: {type: 'boolean'},
				help: {type: 'boolean', short: 'h'},
			},
		});
		return {positionals, flags: values};
	} catch (error) {
		throw new UsageError(errorReason(error));
	}
}

async function get(files: string[], flags: Flags): Promise<number> {
	const [file, key, ...extra] = files;
	if (file === undefined || extra.length > 0) {
		throw new UsageError('meta get takes one file and an optional key');
	}

	const header = await readHeader(file);
	if (key === undefined) {
		if (flags.json) {
			out(`${jsonForTerminal(header.metadata, 2)}\n`);
			return 0;
		}

		const keys = Object.keys(header.metadata);
		if (keys.length === 0) {
			out('(no metadata)\n');
			return 0;
		}

		const width = Math.min(40, Math.max(...keys.map(k => sanitizeLine(k, 40).length)));
		// On a terminal each line is cut to its width; piped output keeps whole values.
		const columns = process.stdout.isTTY ? process.stdout.columns : undefined;
		for (const name of keys) {
			const label = sanitizeLine(name, 40).padEnd(width);
			const budget = columns === undefined ? undefined : Math.max(10, columns - width - 3);
			out(`${label}  ${sanitizeLine(header.metadata[name] ?? '', budget)}\n`);
		}

		return 0;
	}

	const value = header.metadata[key];
	if (value === undefined) {
		fail(file, `no metadata key ${JSON.stringify(sanitizeLine(key, 80))}`);
		return 1;
	}

	if (flags.json) {
		out(`${jsonForTerminal(value)}\n`);
	} else {
		const text = flags.pretty ? prettyJson(value) ?? value : value;
		out(`${sanitizeText(text)}\n`);
	}

	return 0;
}

async function edit(
	file: string,
	change: (metadata: Record<string, string>) => Record<string, string>,
	action: string,
	flags: Flags,
): Promise<number> {
	// A save killed earlier (SIGKILL, power loss) left its recognisable temp file; the default age
	// limit spares a save that another live lorascope is making right now.
	await cleanStaleTempFiles(path.dirname(path.resolve(flags.output ?? file)));
	const header = await readHeader(file);
	const result = await saveMetadata(file, change({...header.metadata}), {
		expected: header,
		backup: flags.backup,
		outPath: flags.output,
	});
	out(describeSave(file, action, result));
	return 0;
}

async function exportFiles(files: string[], flags: Flags): Promise<number> {
	if (files.length === 0) {
		throw new UsageError('meta export needs at least one file');
	}

	const directory = path.resolve(flags.output ?? 'meta');
	await mkdir(directory, {recursive: true});
	const used = new Set<string>();
	let code = 0;
	// Folders are scanned recursively, as `inspect` does; a path that cannot be read is reported
	// and the rest exported.
	for (const {path: file, error} of await expandCommandPaths(files)) {
		if (error !== undefined) {
			fail(file, error);
			code = 1;
			continue;
		}

		try {
			const header = await readHeader(file);
			// Two inputs with the same stem (from different folders) must not overwrite each other.
			let name = exportFileName(file);
			for (let n = 2; used.has(name); n++) {
				name = exportFileName(file).replace(/\.json$/, `-${n}.json`);
			}

			used.add(name);
			const target = path.join(directory, name);
			await writeFileAtomic(target, [Buffer.from(`${JSON.stringify(exportMetadata(header), null, 2)}\n`)], {overwrite: true});
			out(`${sanitizeLine(file, 200)} → ${sanitizeLine(target, 200)}\n`);
		} catch (error) {
			fail(file, reasonOf(error));
			code = 1;
		}
	}

	return code;
}

/** Import files above this are refused before reading (real metadata is at most a few MB). */
const maxImportBytes = 64 * 1024 * 1024;

async function importFile(files: string[], flags: Flags): Promise<number> {
	const [file, jsonPath, ...extra] = files;
	if (file === undefined || jsonPath === undefined || extra.length > 0) {
		throw new UsageError('meta import takes a .safetensors file and a JSON file');
	}

	let metadata: Record<string, string>;
	try {
		const info = await stat(jsonPath);
		if (info.size > maxImportBytes) {
			throw new Error(`${info.size} bytes is over the ${maxImportBytes / 1024 / 1024} MB limit`);
		}

		metadata = importMetadata(await readFile(jsonPath, 'utf8'));
	} catch (error) {
		fail(jsonPath, reasonOf(error));
		return 1;
	}

	return edit(file, () => metadata, `imported ${Object.keys(metadata).length} keys`, flags);
}

export async function run(argv: string[]): Promise<number> {
	const [sub, ...rest] = argv;
	let firstFile: string | undefined;
	try {
		const {positionals, flags} = parse(rest);
		firstFile = positionals[0];
		if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h' || flags.help) {
			(sub === undefined ? process.stderr : process.stdout).write(usage);
			return sub === undefined ? 2 : 0;
		}

		switch (sub) {
			case 'get': {
				return await get(positionals, flags);
			}

			case 'set':
			case 'rm': {
				const [file, ...extra] = positionals;
				const {key} = flags;
				if (file === undefined || extra.length > 0 || key === undefined || key === '') {
					throw new UsageError(`meta ${sub} takes one file and --key`);
				}

				if (sub === 'set') {
					const {value} = flags;
					if (value === undefined) {
						throw new UsageError('meta set needs --value');
					}

					return await edit(file, metadata => setKey(metadata, key, value), `set ${sanitizeLine(key, 80)}`, flags);
				}

				const header = await readHeader(file);
				if (!(key in header.metadata)) {
					fail(file, `no metadata key ${JSON.stringify(sanitizeLine(key, 80))}; nothing changed`);
					return 1;
				}

				return await edit(file, metadata => removeKey(metadata, key), `removed ${sanitizeLine(key, 80)}`, flags);
			}

			case 'export': {
				return await exportFiles(positionals, flags);
			}

			case 'import': {
				return await importFile(positionals, flags);
			}

			default: {
				throw new UsageError(`unknown meta subcommand ${JSON.stringify(sanitizeLine(sub, 40))}`);
			}
		}
	} catch (error) {
		if (error instanceof UsageError) {
			process.stderr.write(`lorascope meta: ${error.message}\n\n${usage}`);
			return 2;
		}

		const withPath = error as {filePath?: unknown};
		fail(typeof withPath.filePath === 'string' ? withPath.filePath : firstFile ?? 'meta', reasonOf(error));
		return 1;
	}
}

/** The one-line reason of an error (LoraFileError, FileChangedError and MetadataEditError carry one). */
function reasonOf(error: unknown): string {
	const reason = (error as {reason?: unknown} | null)?.reason;
	return typeof reason === 'string' ? reason : errorReason(error);
}
