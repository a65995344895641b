// Read-only views of AppState that components and key bindings share.
import {runName} from './file-row.js';
import type {AppState, FileRow, StatsSlot, ViewId} from './types.js';

export function topView(state: AppState): ViewId {
	return state.views.at(-1) ?? 'files';
}

/** The view under any overlay (help, input, edit-value, confirm): the one whose keys the help overlay lists. */
export function baseView(state: AppState): ViewId {
	for (let i = state.views.length - 1; i >= 0; i--) {
		const view = state.views[i];
		if (view !== 'help' && view !== 'input' && view !== 'edit-value' && view !== 'confirm' && view !== undefined) {
			return view;
		}
	}

	return 'files';
}

export function selectedPath(state: AppState): string | undefined {
	return state.order[state.selected];
}

export function selectedRow(state: AppState): FileRow | undefined {
	const path = selectedPath(state);
	return path === undefined ? undefined : state.rows.get(path);
}

export function isMarked(state: AppState, path: string): boolean {
	return state.marks.includes(path);
}

/** The rows on screen: [listScroll, listScroll + listRows). */
export function visibleRows(state: AppState): FileRow[] {
	const rows: FileRow[] = [];
	const end = Math.min(state.order.length, state.listScroll + Math.max(1, state.viewport.listRows));
	for (let i = state.listScroll; i < end; i++) {
		const row = state.rows.get(state.order[i]!);
		if (row) {
			rows.push(row);
		}
	}

	return rows;
}

export function statsKeyOf(row: Pick<FileRow, 'path' | 'sizeBytes' | 'mtimeMs'>): string {
	return `${row.path}\u0000${row.sizeBytes}\u0000${row.mtimeMs}`;
}

export function statsFor(state: AppState, path: string | undefined): StatsSlot | undefined {
	const row = path === undefined ? undefined : state.rows.get(path);
	return row ? state.stats[statsKeyOf(row)] : undefined;
}

export function countFailed(state: AppState): number {
	let failed = 0;
	for (const row of state.rows.values()) {
		if (row.status === 'error') {
			failed++;
		}
	}

	return failed;
}

/** Files marked (or marked + selected) that the `c` key would compare, oldest epoch first. */
export type CompareChoice = {paths: string[]; reason?: undefined} | {paths?: undefined; reason: string};

function byEpoch(state: AppState, paths: string[]): string[] {
	return [...paths].sort((a, b) => {
		const ra = state.rows.get(a);
		const rb = state.rows.get(b);
		const ea = ra?.summary.epoch ?? Number.POSITIVE_INFINITY;
		const eb = rb?.summary.epoch ?? Number.POSITIVE_INFINITY;
		return ea === eb ? (ra?.mtimeMs ?? 0) - (rb?.mtimeMs ?? 0) : ea - eb;
	});
}

export function isOneRun(state: AppState, paths: string[]): boolean {
	const runs = new Set<string>();
	const epochs = new Set<number>();
	for (const path of paths) {
		const row = state.rows.get(path);
		if (!row || row.status !== 'ok' || row.summary.epoch === undefined) {
			return false;
		}

		runs.add(runName(row));
		epochs.add(row.summary.epoch);
	}

	return runs.size === 1 && epochs.size === paths.length;
}

export function compareChoice(state: AppState): CompareChoice {
	const usable = state.marks.filter(path => state.rows.get(path)?.status === 'ok');
	if (state.marks.length > usable.length) {
		return {reason: 'compare: a marked file failed to load; unmark it (space)'};
	}

	if (usable.length >= 3) {
		return isOneRun(state, usable)
			? {paths: byEpoch(state, usable)}
			: {reason: 'compare: 3+ files must be epochs of one run (same output name); mark two to diff'};
	}

	const selected = selectedRow(state);
	if (usable.length === 2) {
		return {paths: byEpoch(state, usable)};
	}

	if (usable.length === 1 && selected && selected.status === 'ok' && selected.path !== usable[0]) {
		return {paths: byEpoch(state, [usable[0]!, selected.path])};
	}

	return {reason: 'compare: mark two files first (space)'};
}

/** The previous epoch of the selected file's run, for the one-key "compare with previous" action. */
export function previousEpochChoice(state: AppState): CompareChoice {
	const row = selectedRow(state);
	if (!row || row.status !== 'ok') {
		return {reason: 'vs previous epoch: select a loaded file first'};
	}

	if (row.summary.epoch === undefined) {
		return {reason: 'vs previous epoch: this file has no epoch'};
	}

	const run = runName(row);
	let best: FileRow | undefined;
	for (const other of state.rows.values()) {
		const epoch = other.summary.epoch;
		if (other.status !== 'ok' || epoch === undefined || epoch >= row.summary.epoch || runName(other) !== run) {
			continue;
		}

		if (!best || epoch > (best.summary.epoch ?? -1)) {
			best = other;
		}
	}

	return best ? {paths: [best.path, row.path]} : {reason: 'vs previous epoch: no earlier epoch of this run in the folder'};
}

export function runningJobs(state: AppState): Array<[string, AppState['jobs'][string]]> {
	return Object.entries(state.jobs).filter(([, job]) => job.state === 'running');
}
