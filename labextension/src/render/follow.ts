/**
 * Following a live stream of rows: while the user is at the end, the view stays at the
 * end, also when a row grows after it was added (an image that loads, an output that
 * expands); once the user scrolls up, the view stays put and a "Jump to latest (N new)"
 * button counts the rows that arrived meanwhile. Shared by the panel's conversation view
 * and the notebook widget.
 */
import { button } from './controls';

/** How close to the bottom (px) still counts as "at the end". */
export const END_SLACK = 40;

export class ScrollFollower {
  /**
   * `scroll` is the scrolling element, `content` what grows inside it. The jump button is
   * `this.jump`: the host puts it where it belongs (over the bottom of the scroll area).
   */
  constructor(
    private readonly _scroll: HTMLElement,
    content: HTMLElement
  ) {
    this.jump = button('Jump to latest', 'jp-convo-jump');
    this.jump.hidden = true;
    this.jump.addEventListener('click', () => this.toEnd());
    this._scroll.addEventListener('scroll', this._onScroll, { passive: true });
    if (typeof ResizeObserver !== 'undefined') {
      this._resize = new ResizeObserver(() => this._keepAtEnd());
      this._resize.observe(content);
      this._resize.observe(this._scroll);
    }
  }

  readonly jump: HTMLButtonElement;

  /** Whether the view follows new rows (the user is at the end). */
  get following(): boolean {
    return this._following;
  }

  /** Rows arrived while the user was scrolled up. */
  get unseen(): number {
    return this._unseen;
  }

  /** `count` rows were added at the end: follow them, or count them as unseen. */
  added(count: number): void {
    if (count <= 0) {
      return;
    }
    if (this._following) {
      this._keepAtEnd();
    } else {
      this._unseen += count;
      this._showJump();
    }
  }

  /** Go to the end and follow again. */
  toEnd(): void {
    this._following = true;
    this._unseen = 0;
    this._showJump();
    this._keepAtEnd();
  }

  dispose(): void {
    this._resize?.disconnect();
    this._scroll.removeEventListener('scroll', this._onScroll);
  }

  /** Scroll to the end when following (after the view was shown again). */
  refresh(): void {
    this._keepAtEnd();
  }

  private _keepAtEnd(): void {
    if (this._following) {
      this._scroll.scrollTop = this._scroll.scrollHeight;
      this._lastTop = this._scroll.scrollTop;
    }
  }

  /**
   * Scrolling up stops following, reaching the end resumes it. A scroll event arrives a
   * frame after the scroll, and content may have grown meanwhile (an image loaded): so
   * "not at the end" alone does not mean the user left it, moving up does.
   */
  private _onScroll = (): void => {
    const node = this._scroll;
    const top = node.scrollTop;
    const atEnd = node.scrollHeight - top - node.clientHeight < END_SLACK;
    if (atEnd) {
      this._following = true;
      this._unseen = 0;
    } else if (top < this._lastTop - 1) {
      this._following = false;
    }
    this._lastTop = top;
    this._showJump();
  };

  private _showJump(): void {
    this.jump.hidden = this._following || this._unseen === 0;
    this.jump.textContent = `Jump to latest (${this._unseen} new)`;
  }

  private _following = true;
  private _unseen = 0;
  private _lastTop = 0;
  private _resize: ResizeObserver | null = null;
}
