// Every pane size of the dashboard is derived here, from the terminal size alone (plus which
// pane has focus in the stacked arrangement). Pure, so it is unit-tested without rendering.

export const minColumns = 80;
export const minRows = 24;
/** From this width on, the detail pane sits to the right of the list; below it, underneath. */
export const wideMinColumns = 120;

export type LayoutMode = 'wide' | 'stacked' | 'too-small';

export type PaneBox = {
	/** Outer size including the one-cell border. */
	width: number;
	height: number;
	/** Size inside the border. */
	innerWidth: number;
	innerHeight: number;
};

export type Layout = {
	mode: LayoutMode;
	columns: number;
	rows: number;
	/** Height of the root box: one less than the terminal (ink 6 clears the screen on every frame otherwise). */
	rootHeight: number;
	/** Title bar, status line and help bar are one line each. */
	titleHeight: number;
	footerHeight: number;
	/** The area between title and footer; full-screen views (compare, help, log) use all of it. */
	body: {width: number; height: number};
	list: PaneBox;
	detail: PaneBox;
	/** Rows of file data the list shows (its inner height minus the column header and the position line). */
	listRows: number;
	/** Rows of tab content the detail pane shows (its inner height minus the tab bar and the hint line). */
	detailRows: number;
};

export type LayoutInput = {
	columns: number;
	rows: number;
	/** In the stacked arrangement the focused pane gets the larger share. */
	focus?: 'list' | 'detail';
};

function pane(width: number, height: number): PaneBox {
	const w = Math.max(0, width);
	const h = Math.max(0, height);
	return {width: w, height: h, innerWidth: Math.max(0, w - 2), innerHeight: Math.max(0, h - 2)};
}

export function computeLayout({columns, rows, focus = 'list'}: LayoutInput): Layout {
	// A terminal that reports nothing (a pipe) is treated as the minimum size.
	const cols = Number.isFinite(columns) && columns > 0 ? Math.floor(columns) : minColumns;
	const rws = Number.isFinite(rows) && rows > 0 ? Math.floor(rows) : minRows;
	const rootHeight = Math.max(1, rws - 1);
	const titleHeight = 1;
	const footerHeight = 2;
	const bodyHeight = Math.max(0, rootHeight - titleHeight - footerHeight);
	const body = {width: cols, height: bodyHeight};

	if (cols < minColumns || rws < minRows) {
		return {
			mode: 'too-small',
			columns: cols,
			rows: rws,
			rootHeight,
			titleHeight,
			footerHeight,
			body,
			list: pane(0, 0),
			detail: pane(0, 0),
			listRows: 0,
			detailRows: 0,
		};
	}

	if (cols >= wideMinColumns) {
		// The list keeps enough width for name, modified, size and rank; the detail gets the rest.
		const listWidth = Math.min(Math.max(Math.round(cols * 0.45), 56), 100);
		const list = pane(listWidth, bodyHeight);
		const detail = pane(cols - listWidth, bodyHeight);
		return {
			mode: 'wide',
			columns: cols,
			rows: rws,
			rootHeight,
			titleHeight,
			footerHeight,
			body,
			list,
			detail,
			listRows: Math.max(0, list.innerHeight - 2),
			detailRows: Math.max(0, detail.innerHeight - 2),
		};
	}

	// Stacked: the focused pane gets most of the height, the other stays readable (≥ 7 rows).
	const share = focus === 'list' ? 0.55 : 0.3;
	const listHeight = Math.min(Math.max(Math.round(bodyHeight * share), 7), bodyHeight - 7);
	const list = pane(cols, listHeight);
	const detail = pane(cols, bodyHeight - listHeight);
	return {
		mode: 'stacked',
		columns: cols,
		rows: rws,
		rootHeight,
		titleHeight,
		footerHeight,
		body,
		list,
		detail,
		listRows: Math.max(0, list.innerHeight - 2),
		detailRows: Math.max(0, detail.innerHeight - 2),
	};
}

/** The btop-style message of the too-small screen. */
export function tooSmallMessage(columns: number, rows: number, unicode: boolean): string {
	const ge = unicode ? '≥' : '>=';
	const x = unicode ? '×' : 'x';
	return `lorascope needs ${ge} ${minColumns}${x}${minRows}, have ${columns}${x}${rows}`;
}
