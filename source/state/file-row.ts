// Turns a loaded entry into the list row the dashboard shows and filters on. Every display string is
// sanitised here, once per load, so rendering thousands of rows never re-sanitises.
import path from 'node:path';
import {metadataOf, summaryOf} from '../lora/entry.js';
import type {LoadedEntry} from './entry-shape.js';
import type {FilterSubject, CanonicalField} from './filter.js';
import {clean} from './text.js';
import type {FileRow, RowSummary, TerminalEnv} from './types.js';

export type FoundFile = {path: string; sizeBytes: number; mtimeMs: number};

const maxFieldWidth = 200;

function finiteNumber(raw: string | undefined): number | undefined {
	if (raw === undefined || raw.trim() === '' || raw === 'None') {
		return undefined;
	}

	const value = Number(raw);
	return Number.isFinite(value) ? value : undefined;
}

/** kohya appends `-000005` (the epoch, six digits) to the output name of intermediate saves. */
const epochSuffix = /-(\d{6})(?:\.[^.]+)?$/;

export function epochFromName(fileName: string): number | undefined {
	const match = epochSuffix.exec(fileName);
	return match ? Number(match[1]) : undefined;
}

/** The run a file belongs to: its output name, or its file name without extension and epoch suffix. */
export function runName(row: FileRow): string {
	if (row.summary.outputName) {
		return row.summary.outputName;
	}

	return row.name.replace(/\.[^.]+$/, '').replace(/-\d{6}$/, '');
}

function displayName(filePath: string, folder: string, env: TerminalEnv): {name: string; folder: string} {
	const relative = path.relative(folder, path.dirname(filePath));
	return {
		name: clean(path.basename(filePath), env, maxFieldWidth),
		folder: relative === '' ? '.' : clean(relative, env, maxFieldWidth),
	};
}

export function pendingRow(file: FoundFile, folder: string, env: TerminalEnv, seq: number, isNew = false): FileRow {
	return {
		path: file.path,
		...displayName(file.path, folder, env),
		sizeBytes: file.sizeBytes,
		mtimeMs: file.mtimeMs,
		status: 'pending',
		isNew,
		summary: {},
		seq,
	};
}

function summarize(entry: LoadedEntry, fileName: string, env: TerminalEnv): RowSummary {
	const metadata = metadataOf(entry) ?? {};
	const text = (key: string): string | undefined => {
		const value = metadata[key];
		return value === undefined || value === '' || value === 'None' ? undefined : clean(value, env, maxFieldWidth);
	};

	// A full entry's model, or a light entry's summary of it (the same fields, from a scan worker).
	const model = summaryOf(entry);
	const summary: RowSummary = {};
	if (model) {
		summary.arch = model.arch === 'unknown' ? (model.metadataArch ?? undefined) : model.arch;
		summary.networkType = model.networkType;
		summary.rank = model.rank ?? undefined;
		summary.alpha = model.alpha ?? undefined;
		summary.dtype = model.dtype;
		summary.moduleCount = model.moduleCount;
	}

	const dim = metadata['ss_network_dim'];
	const alpha = metadata['ss_network_alpha'];
	summary.rank ??= finiteNumber(dim);
	summary.alpha ??= finiteNumber(alpha);
	if (summary.rank === undefined && dim !== undefined && dim !== '' && dim !== 'None') {
		summary.rankText = clean(dim, env, 12);
	}

	if (summary.alpha === undefined && alpha !== undefined && alpha !== '' && alpha !== 'None') {
		summary.alphaText = clean(alpha, env, 12);
	}

	summary.epoch = finiteNumber(metadata['ss_epoch']) ?? epochFromName(fileName);
	summary.outputName = text('ss_output_name');
	summary.title = text('modelspec.title');
	summary.optimizer = text('ss_optimizer');
	summary.lr = finiteNumber(metadata['ss_learning_rate']);
	summary.steps = finiteNumber(metadata['ss_max_train_steps']) ?? finiteNumber(metadata['ss_steps']);
	summary.base = text('ss_sd_model_name') ?? text('modelspec.architecture');
	summary.resolution = text('ss_resolution') ?? text('modelspec.resolution');
	summary.scheduler = text('ss_lr_scheduler');
	return summary;
}

export function rowFromEntry(entry: LoadedEntry, folder: string, env: TerminalEnv, seq: number, isNew = false): FileRow {
	const names = displayName(entry.path, folder, env);
	const failed = entry.error !== undefined && entry.error !== null;
	return {
		path: entry.path,
		...names,
		sizeBytes: entry.sizeBytes,
		mtimeMs: entry.mtimeMs,
		status: failed ? 'error' : 'ok',
		error: failed ? clean(entry.error, env, 300) : undefined,
		isNew,
		summary: failed ? {epoch: epochFromName(path.basename(entry.path))} : summarize(entry, path.basename(entry.path), env),
		entry,
		seq,
	};
}

// The text filter scans every metadata key and value; built lazily and kept per entry object.
const haystacks = new WeakMap<FileRow, string>();
const tagLists = new WeakMap<FileRow, string[]>();

function haystackOf(row: FileRow): string {
	let text = haystacks.get(row);
	if (text === undefined) {
		const parts = [row.name, row.folder, row.error ?? ''];
		for (const [key, value] of Object.entries(metadataOf(row.entry) ?? {})) {
			parts.push(key, value);
		}

		for (const value of Object.values(row.summary)) {
			parts.push(String(value));
		}

		text = parts.join('\n').toLowerCase();
		haystacks.set(row, text);
	}

	return text;
}

function tagsOf(row: FileRow): string[] {
	let tags = tagLists.get(row);
	if (tags === undefined) {
		const set = new Set<string>();
		const raw = metadataOf(row.entry)?.['ss_tag_frequency'];
		if (raw !== undefined) {
			try {
				const parsed = JSON.parse(raw) as unknown;
				if (parsed && typeof parsed === 'object') {
					for (const dir of Object.values(parsed as Record<string, unknown>)) {
						if (dir && typeof dir === 'object') {
							for (const tag of Object.keys(dir as Record<string, unknown>)) {
								set.add(tag.trim().toLowerCase());
							}
						}
					}
				}
			} catch {
				// Unparseable tag metadata simply has no tags to match.
			}
		}

		tags = [...set];
		tagLists.set(row, tags);
	}

	return tags;
}

export function filterSubject(row: FileRow, marked: boolean): FilterSubject {
	const s = row.summary;
	const values: Partial<Record<CanonicalField, string | number | undefined>> = {
		name: row.name,
		folder: row.folder,
		arch: s.arch,
		type: s.networkType,
		rank: s.rank ?? s.rankText,
		alpha: s.alpha ?? s.alphaText,
		epoch: s.epoch,
		size: row.sizeBytes,
		output: s.outputName,
		optimizer: s.optimizer,
		lr: s.lr,
		steps: s.steps,
		title: s.title,
		dtype: s.dtype,
		error: row.error,
		base: s.base,
		resolution: s.resolution,
		scheduler: s.scheduler,
	};
	return {
		field: name => values[name],
		metadata: row.entry?.header?.metadata,
		tags: () => tagsOf(row),
		haystack: () => haystackOf(row),
		flags: {new: row.isNew, marked, failed: row.status === 'error', loading: row.status === 'pending'},
	};
}
