"""Split an image of a row of handwritten digits into the digits, each prepared as MNIST.

A row is one image holding several digits side by side, left to right, written on one line
(a number, a code): how many is known in advance. The ink is found as for one digit
(`training.digit_images`); its parts are grouped into digits by the columns they cover (parts
that overlap horizontally, like a 5's flag and its body, are one digit). The fewest changes
then reach the expected count: fragments (far shorter than the row's digits) are joined to a
neighbour, and groups holding several touching digits are cut along seams, curved paths from
the top of the ink to its bottom that cross the least ink. Each digit is then prepared on its
own, as `training.digit_images.to_mnist` prepares one.
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np

from training.digit_images import (
    NoDigitFound,
    PreparedDigit,
    _center_by_mass,
    _ink_of,
    _normalized_strokes,
    _strokes,
    _unscaled,
    stroke_width,
)

# Rows, in heights of the row's digits: how wide a fragment joined to a neighbour may make
# it, how wide one digit can be (MNIST's are at most as wide as tall), and how wide a group must
# be to hold two digits for sure (then a fragment elsewhere is joined to a neighbour even when
# the count is already right).
MAX_DIGIT_ASPECT = 1.0
MAX_DIGIT_WIDTH = 1.05
SURELY_TWO_WIDE = 1.2
FRAGMENT_HEIGHT = 0.6  # a group shorter than this is likely a fragment of a digit
MAX_GROUPS_PER_DIGIT = 3  # more ink groups than this per expected digit: not such a row
# Cutting touching digits apart (`_cut_touching`). Seams are paths from the top of the ink to
# its bottom, moving at most a column a row; their cost is the ink they cross, in stroke widths.
MIN_PIECE_WIDTH = 2  # pixels: a touching group is never cut into narrower pieces
MIN_PIECE_SHARE = 0.1  # heights: nor into pieces narrower than this (a 1 is about 0.2 wide)
MIN_PIECE_INK = 0.4  # heights of stroke: each piece holds at least this much ink
MIN_DIGIT_SHARE = 0.15  # heights: a group is given another digit only if each can be this wide
SEAM_STEP_COST = 0.05  # stroke widths: a seam's cost for each column it moves sideways
# Heights: a piece shorter than TALL_PIECE is likely part of a digit cut in two (a touching
# pair's pieces are nearly always 0.95 tall or more, half of one digit's 0.55 in the median);
# TALL_WEIGHT: how much it disfavours the cut, per height it falls short.
TALL_PIECE, TALL_WEIGHT = 0.9, 2.0
SWAP_SCORE = -0.5  # a cut scoring below this is convincing enough to join a fragment for
# A group no wider than the digits it holds gets another only if its cut scores below this:
# with a row of 9 digits, 10 expected, single digits were cut in two until the count was met
# (a wrong answer, never a refusal); at 0, 87% of such rows are refused, and 1.6% of rows of
# touching digits that were split right are refused too (scratch measure, 180 rows each).
MAX_CUT_SCORE = 0.0
WIDTH_WEIGHT = 2.0  # how much wide pieces favour a cut, per height of width (up to 0.75)
# Pixels: taller ink, or a group wider than CUT_WIDTH, is cut on a downscaled copy (the time
# grows with the ink's area and with the square of a group's width).
CUT_HEIGHT, CUT_WIDTH = 160, 1200


class WrongDigitCount(ValueError):
    """A row of digits held another number of digits than expected."""

    def __init__(self, found: int, expected: int) -> None:
        super().__init__(
            f"found {found} digit{'s' * (found != 1)} in the row, expected {expected}. Write "
            f"the digits side by side with a gap between neighbours, or upload each digit as "
            f"its own image."
        )
        self.found = found
        self.expected = expected


def split_row(gray: np.ndarray, expected: int) -> list[PreparedDigit]:
    """Prepare each digit of an image holding a row of digits, left to right.

    The ink is found as for one digit; its parts are grouped into digits by their columns
    (parts that overlap horizontally, like a 5's flag and its body, are one digit). Knowing how
    many digits to expect, the fewest changes are made to reach that count: fragments join a
    neighbour, and groups that hold several digits (digits that touch) are cut along the
    curved paths that cross the least ink. Each digit is then normalised on its own.
    `WrongDigitCount` when the count still differs.
    """
    if gray.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got shape {gray.shape}.")
    ink, mask, factor = _ink_of(gray)
    columns = _digit_columns(mask, most=MAX_GROUPS_PER_DIGIT * expected)
    found = len(columns)
    columns = _merge_strays(columns, expected)
    columns = _join_fragment_to_cut_a_pair(columns, expected, ink)
    columns = _cut_touching(columns, expected, ink, worst=MAX_CUT_SCORE)
    if len(columns) != expected:
        raise WrongDigitCount(found, expected)
    digits = []
    for parts in columns:
        x, y, width, height = cv2.boundingRect(parts)
        window = (slice(y, y + height), slice(x, x + width))
        strokes = _normalized_strokes(_strokes(ink[window], parts[window]))
        box = _unscaled((x, y, width, height), factor)
        digits.append(PreparedDigit(image=_center_by_mass(strokes), box=box))
    return digits


def _digit_columns(mask: np.ndarray, most: int) -> list[np.ndarray]:
    """A 0/1 image of each digit's parts, left to right: ink components, without specks or
    (when anything else is there) edges, grouped while they overlap horizontally.

    In a row cropped tightly, digits touch the top and bottom; an edge is a component along
    the border: wider than a third of the row, or against a side and nearly as tall as it.
    More than `most` groups: `WrongDigitCount` (not a row of the digits expected; joining them
    would take time quadratic in their number).
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = mask.shape
    components = []
    for index in range(1, count):
        x, y, w, h, area = (int(value) for value in stats[index])
        on_side = x == 0 or x + w >= width
        on_top_or_bottom = y == 0 or y + h >= height
        is_edge = ((on_side or on_top_or_bottom) and w > width / 3) or (
            on_side and h > 0.8 * height
        )
        components.append((x, w, area, is_edge, index))
    inside = [c for c in components if not c[3]] or components
    if not inside:
        raise NoDigitFound("no digit found: no ink in the image.")
    minimum = max(4, 0.05 * max(c[2] for c in inside))
    groups: list[list[int]] = []  # each: [left, right, component index, ...]
    for x, w, _, _, index in sorted(c for c in inside if c[2] >= minimum):
        if groups and x < groups[-1][1] - 0.3 * w:  # overlaps the previous digit's columns
            groups[-1][1] = max(groups[-1][1], x + w)
            groups[-1].append(index)
        else:
            groups.append([x, x + w, index])
    if len(groups) > most:
        raise WrongDigitCount(len(groups), most // MAX_GROUPS_PER_DIGIT)
    return [np.isin(labels, indices).astype(np.uint8) for _, _, *indices in groups]


def _merge_strays(columns: list[np.ndarray], expected: int) -> list[np.ndarray]:
    """While there are too many groups, join a fragment (far shorter than the row's digits,
    like a 5's flag) to the neighbour that makes the narrowest union; never two groups of a
    digit's height (two narrow digits, like 1 1, are not one digit: a row of 11 digits was read
    as 10) nor a union wider than a digit can be (then the row holds more digits than
    expected, and the caller says so).

    Groups too wide for one digit (touching digits) will be cut into more digits; while they
    would take the count past `expected`, fragments are joined to a neighbour too (a 5's flag
    beside two touching 1s once made the right count of wrong digits)."""
    columns = list(columns)
    while len(columns) > 1:
        boxes = [cv2.boundingRect(parts) for parts in columns]
        height = float(np.median([h for _, _, _, h in boxes]))
        surplus = len(columns) - expected
        to_cut = sum(math.ceil(w / (SURELY_TWO_WIDE * height)) - 1 for _, _, w, _ in boxes)
        if surplus + max(to_cut, 0) <= 0:
            break
        costs = [
            _union_width(left, right) / height - 1  # a fragment widens a digit a little
            if min(left[3], right[3]) < FRAGMENT_HEIGHT * height
            else np.inf
            for left, right in itertools.pairwise(boxes)
        ]
        pair = int(np.argmin(costs))
        if costs[pair] > MAX_DIGIT_ASPECT:
            break
        columns[pair : pair + 2] = [columns[pair] | columns[pair + 1]]
    return columns


def _union_width(left: tuple[int, ...], right: tuple[int, ...]) -> int:
    return max(left[0] + left[2], right[0] + right[2]) - min(left[0], right[0])


class _Seams:
    """The least-cost seam through each column of the middle row of `cost` (ink, in stroke
    widths), moving at most one column a row, `SEAM_STEP_COST` a move, within `allowed`
    columns. Unlike a straight cut, a seam finds its way between digits whose boxes overlap
    but whose strokes barely touch."""

    def __init__(self, cost: np.ndarray, allowed: np.ndarray) -> None:
        rows, width = cost.shape
        cost = np.where(allowed, cost, np.inf)
        self.middle = rows // 2
        # The column each row's best seam comes from, as -1, 0 or +1, seen from the middle.
        self.from_above = np.zeros((rows, width), np.int8)
        self.from_below = np.zeros((rows, width), np.int8)
        above = self._sweep(cost, range(self.middle + 1), self.from_above)
        below = self._sweep(cost, range(rows - 1, self.middle - 1, -1), self.from_below)
        with np.errstate(invalid="ignore"):  # inf - inf outside the allowed columns
            profile = above + below - cost[self.middle]
        self.profile = np.where(np.isfinite(profile), profile, np.inf)

    @staticmethod
    def _sweep(cost: np.ndarray, order: range, moves: np.ndarray) -> np.ndarray:
        total = cost[order[0]].copy()
        columns = np.arange(cost.shape[1])
        options = np.full((3, cost.shape[1]), np.inf)
        for row in order[1:]:
            options[0, 1:] = total[:-1] + SEAM_STEP_COST  # from the column on the left
            options[1] = total
            options[2, :-1] = total[1:] + SEAM_STEP_COST
            choice = np.argmin(options, axis=0)
            moves[row] = choice - 1
            total = options[choice, columns] + cost[row]
        return total

    def path(self, column: int) -> np.ndarray:
        """The seam's column in each row."""
        path = np.empty(len(self.from_above), np.int64)
        path[self.middle] = column
        for row in range(self.middle, 0, -1):
            path[row - 1] = path[row] + self.from_above[row, path[row]]
        for row in range(self.middle, len(path) - 1):
            path[row + 1] = path[row] + self.from_below[row, path[row]]
        return path


def _join_fragment_to_cut_a_pair(
    columns: list[np.ndarray], expected: int, ink: np.ndarray
) -> list[np.ndarray]:
    """With the count already right, a fragment (far shorter than the row's digits, like a 5's
    flag) that makes a digit-wide union with a neighbour is joined to it when another group
    then cuts convincingly into two digits (its cut scores below SWAP_SCORE): the fragment
    was counted as a digit while two touching digits were counted as one."""
    if len(columns) != expected or expected < 2:
        return columns
    boxes = [cv2.boundingRect(parts) for parts in columns]
    height = float(np.median([h for _, _, _, h in boxes]))
    costs = [
        _union_width(left, right) / height
        if min(left[3], right[3]) < FRAGMENT_HEIGHT * height
        else np.inf
        for left, right in itertools.pairwise(boxes)
    ]
    pair = int(np.argmin(costs))
    if costs[pair] > MAX_DIGIT_ASPECT:
        return columns
    joined = columns[pair] | columns[pair + 1]
    candidate = [*columns[:pair], joined, *columns[pair + 2 :]]
    cut = _cut_touching(candidate, expected, ink, worst=SWAP_SCORE, keep=pair)
    return cut if len(cut) == expected else columns


def _cut_touching(
    columns: list[np.ndarray],
    expected: int,
    ink: np.ndarray,
    worst: float = np.inf,
    keep: int | None = None,
) -> list[np.ndarray]:
    """While there are too few groups, give one more digit to the group that best holds
    another: first a group too wide for the digits it holds, else the one whose cut into one
    more piece crosses the least ink, leaves no piece far shorter than a digit and gives wide
    pieces. Then cut each group along its seams.

    A group of n digits is cut along n - 1 seams (`_Seams`) chosen together for the least ink
    crossed, each piece between MIN_PIECE_SHARE and MAX_DIGIT_WIDTH heights wide (at its
    middle row) and holding MIN_PIECE_INK heights of stroke. Ink taller than CUT_HEIGHT, or a
    group wider than CUT_WIDTH, is cut on a copy downscaled in whole blocks of pixels to fit
    both, and the seams are scaled back: a digit needs no more pixels than that to be told
    from its neighbour, and the time stays bounded on a large image of one ink group.
    """
    if len(columns) >= expected:
        return columns
    union = np.zeros_like(columns[0])
    for parts in columns:
        union |= parts
    rows = np.flatnonzero(union.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    boxes = [cv2.boundingRect(parts[top:bottom]) for parts in columns]
    widest = max(width for _, _, width, _ in boxes)
    block = max(1, math.ceil((bottom - top) / CUT_HEIGHT), math.ceil(widest / CUT_WIDTH))
    band_ink = _downscaled(ink[top:bottom], block)
    band_parts = []
    for parts, (x, _, width, _) in zip(columns, boxes, strict=True):
        first, last = x // block, -(-(x + width) // block)  # the group's columns of blocks
        small = np.zeros(band_ink.shape, parts.dtype)
        crop = parts[top:bottom, first * block : last * block]
        small[:, first:last] = _downscaled(crop, block) > 0  # any ink in the block
        band_parts.append(small)
    seams = _choose_seams(band_parts, expected, band_ink, worst, keep)
    digits = []
    for parts, group_seams in zip(columns, seams, strict=True):
        if not group_seams:
            digits.append(parts)
            continue
        x, _, width, _ = cv2.boundingRect(parts)
        band = parts[top:bottom, x : x + width]
        # A seam at column c of the copy runs left of its block c: column c * block here.
        edges = [np.full(bottom - top, -1)]
        edges += [np.repeat(seam * block - x, block)[: bottom - top] for seam in group_seams]
        edges += [np.full(bottom - top, width)]
        for index in range(2, len(edges) - 1):  # seams may meet, never cross
            edges[index] = np.maximum(edges[index], edges[index - 1])
        here = np.arange(width)[None, :]
        for left, right in itertools.pairwise(edges):
            piece = np.zeros_like(parts)
            piece[top:bottom, x : x + width] = band * (
                (here >= left[:, None]) & (here < right[:, None])
            )
            digits.append(piece)
    return digits


def _downscaled(image: np.ndarray, block: int) -> np.ndarray:
    """The mean of each `block` x `block` pixels of `image` (float32), the last row and column
    of blocks padded with zeros."""
    if block == 1:
        return image
    rows, columns = -(-image.shape[0] // block), -(-image.shape[1] // block)
    padded = np.zeros((rows * block, columns * block), np.float32)
    padded[: image.shape[0], : image.shape[1]] = image
    return cv2.resize(padded, (columns, rows), interpolation=cv2.INTER_AREA)


def _choose_seams(
    columns: list[np.ndarray],
    expected: int,
    ink: np.ndarray,
    worst: float = np.inf,
    keep: int | None = None,
) -> list[list[np.ndarray]]:
    """For each group (`columns`, cropped to the ink's rows), the seams (each seam's column in
    every row) along which `_cut_touching` cuts it: none for a group left whole. Only cuts
    scoring below `worst` are made, and group `keep` is never cut."""
    boxes = [cv2.boundingRect(parts) for parts in columns]
    height = float(np.median([h for _, _, _, h in boxes]))
    union = np.zeros_like(columns[0])
    for parts in columns:
        union |= parts
    cost = ink * union / max(stroke_width(union), 1.0)
    narrowest = max(MIN_PIECE_WIDTH, round(MIN_PIECE_SHARE * height))
    allowed = np.zeros(union.shape[1], bool)
    for x, _, width, _ in boxes:
        allowed[x + narrowest : x + width - narrowest + 1] = True
    seams = _Seams(cost, allowed)
    ink_left_of = np.concatenate([[0.0], np.cumsum(cost.sum(axis=0))])
    holds = [1] * len(columns)
    cuts: dict[tuple[int, int], list[int] | None] = {}
    scores: dict[tuple[int, int], float] = {}

    def score(index: int, count: int) -> float:
        """How well group `index` splits into `count` digits (lower is better; inf: not)."""
        width = boxes[index][2]
        share = width / (count * height)
        if share < MIN_DIGIT_SHARE or width / count < MIN_PIECE_WIDTH:
            return np.inf
        if (index, count) not in scores:
            where = _seam_cuts(seams.profile, ink_left_of, boxes[index], count, height, narrowest)
            cuts[index, count] = where
            if where is None:
                scores[index, count] = np.inf
            else:
                crossed = max(float(seams.profile[column]) for column in where)
                pieces = _pieces(columns[index], boxes[index], where, seams)
                tall = [_ink_height(piece) / height for piece in pieces]
                short = TALL_WEIGHT * sum(max(0.0, TALL_PIECE - piece) for piece in tall)
                scores[index, count] = (
                    crossed + short - WIDTH_WEIGHT * min(share, 0.75) if min(tall) else np.inf
                )
        return scores[index, count]

    while sum(holds) < expected:
        options = [
            (boxes[i][2] <= MAX_DIGIT_WIDTH * holds[i] * height, score(i, holds[i] + 1), i)
            for i in range(len(columns))
        ]
        fits, best, index = min(
            (option for option in options if option[2] != keep), default=(True, np.inf, -1)
        )
        # A group too wide for the digits it holds holds more, whatever its cut crosses.
        if not (best < worst or (not fits and np.isfinite(best))):
            break
        holds[index] += 1
    return [
        [seams.path(cut) for cut in cuts[index, count]] if count > 1 else []
        for index, count in enumerate(holds)
    ]


def _seam_cuts(
    profile: np.ndarray,
    ink_left_of: np.ndarray,
    box: tuple[int, int, int, int],
    count: int,
    height: float,
    narrowest: int,
) -> list[int] | None:
    """The middle-row columns of the `count - 1` seams that cut the group in `box` into
    `count` pieces crossing the least ink in all (dynamic programming over the pieces' right
    edges), each piece `narrowest` to MAX_DIGIT_WIDTH heights wide (wider where the group is
    too wide for that) and holding MIN_PIECE_INK heights of stroke; None if none can."""
    x, _, width, _ = box
    widest = max(narrowest, int(MAX_DIGIT_WIDTH * height))
    if count * widest < width:  # too wide for `count` digits: let pieces be wider
        widest = math.ceil(1.5 * width / count)
    widest = min(widest, width)
    if widest < narrowest:
        return None
    ends = np.arange(width + 1)
    starts = ends[:, None] - np.arange(narrowest, widest + 1)[None, :]  # [end, piece width]
    possible = starts >= 0
    starts = np.where(possible, starts, 0)
    inside = ink_left_of[x + ends][:, None] - ink_left_of[x + starts]
    possible &= inside >= MIN_PIECE_INK * height
    # The profile ends at the group's last column when the ink reaches the image's edge.
    seam_cost = np.append(profile, np.inf)[x : x + width + 1]
    best = np.full(width + 1, np.inf)  # least cost of the pieces so far, by right edge
    best[0] = 0.0
    previous = []
    for piece in range(count):
        totals = np.where(possible, best[starts], np.inf)
        choice = np.argmin(totals, axis=1)
        best = totals[ends, choice] + (seam_cost if piece < count - 1 else 0.0)
        previous.append(starts[ends, choice])
    if not np.isfinite(best[width]):
        return None
    edges = [width]
    for step in reversed(previous):
        edges.append(int(step[edges[-1]]))
    return [x + edge for edge in reversed(edges[1:-1])]


def _pieces(
    parts: np.ndarray, box: tuple[int, int, int, int], cuts: list[int], seams: _Seams
) -> list[np.ndarray]:
    """The group's parts (rows of the seams) within its box, cut along the seams."""
    x, _, width, _ = box
    rows = parts.shape[0]
    edges = [np.full(rows, x)] + [seams.path(cut) for cut in cuts] + [np.full(rows, x + width)]
    for index in range(2, len(edges) - 1):  # seams may meet, never cross
        edges[index] = np.maximum(edges[index], edges[index - 1])
    columns = np.arange(x, x + width)[None, :]
    crop = parts[:, x : x + width]
    return [
        crop * ((columns >= left[:, None]) & (columns < right[:, None]))
        for left, right in itertools.pairwise(edges)
    ]


def _ink_height(piece: np.ndarray) -> int:
    rows = np.flatnonzero(piece.any(axis=1))
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0
