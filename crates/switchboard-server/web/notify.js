// Browser notifications (and an optional short tone) for messages that arrive while the page is
// hidden. Permission is asked only from a click on the bell, as browsers require a user gesture;
// the choice is kept per device in localStorage.

/** localStorage: `{notify, sound}`, what this device asked for. */
const SETTINGS_KEY = 'switchboard.notify';
/** The tone: a short sine beep, made with Web Audio so that no sound file is needed. */
const TONE_HZ = 880;
const TONE_SECONDS = 0.15;
/** How much of a message's text a notification shows. */
const BODY_CHARS = 140;

export class Notifier {
  /** `onOpen(convId)`: a click on a notification opens its conversation. */
  constructor({ bell, speaker, onOpen }) {
    this.bell = bell;
    this.speaker = speaker;
    this.onOpen = onOpen;
    this.settings = { notify: false, sound: false };
    try {
      Object.assign(this.settings, JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? '{}'));
    } catch {
      // A damaged setting: start with everything off.
    }
    /** The audio context, made on a user gesture (browsers keep one made otherwise silent). */
    this.audio = null;
    bell.addEventListener('click', () => this.toggleNotify());
    speaker.addEventListener('click', () => this.toggleSound());
    // A reload keeps "sound on", but the audio may only start after the page's first gesture.
    const unlock = () => {
      if (this.settings.sound) this.audioContext();
    };
    document.addEventListener('pointerdown', unlock, { once: true });
    document.addEventListener('keydown', unlock, { once: true });
    this.render();
  }

  get supported() {
    return typeof window.Notification === 'function';
  }

  get enabled() {
    return this.supported && this.settings.notify && window.Notification.permission === 'granted';
  }

  async toggleNotify() {
    if (!this.supported) return;
    if (this.settings.notify) {
      this.settings.notify = false;
    } else {
      const permission =
        window.Notification.permission === 'default' ? await window.Notification.requestPermission() : window.Notification.permission;
      this.settings.notify = permission === 'granted';
    }
    this.save();
  }

  toggleSound() {
    this.settings.sound = !this.settings.sound;
    if (this.settings.sound) this.audioContext();
    this.save();
  }

  save() {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(this.settings));
    this.render();
  }

  render() {
    const denied = this.supported && window.Notification.permission === 'denied';
    this.bell.hidden = !this.supported;
    this.bell.setAttribute('aria-pressed', String(this.enabled));
    this.bell.title = denied
      ? 'Notifications are blocked in this browser’s site settings'
      : this.enabled
        ? 'Notifications on while this page is hidden (click to turn off)'
        : 'Notify me of new messages while this page is hidden';
    this.speaker.setAttribute('aria-pressed', String(this.settings.sound));
    this.speaker.title = this.settings.sound ? 'Sound on (click to mute)' : 'Play a sound for new messages';
  }

  audioContext() {
    const Context = window.AudioContext ?? window.webkitAudioContext;
    if (!Context) return null;
    this.audio ??= new Context();
    if (this.audio.state === 'suspended') this.audio.resume().catch(() => {});
    return this.audio;
  }

  /** A new message from someone else, in conversation `convId` titled `title`. */
  message(convId, title, message) {
    if (document.visibilityState === 'visible') return;
    if (this.settings.sound) this.beep();
    if (!this.enabled) return;
    const text = message.text.length > BODY_CHARS ? `${message.text.slice(0, BODY_CHARS)}…` : message.text;
    // One notification per conversation: a newer message replaces the one shown (same tag).
    const notification = new window.Notification(title, { body: text, tag: convId });
    notification.onclick = () => {
      window.focus();
      this.onOpen(convId);
      notification.close();
    };
  }

  beep() {
    const audio = this.audioContext();
    if (!audio) return;
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.frequency.value = TONE_HZ;
    gain.gain.value = 0.1;
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start();
    oscillator.stop(audio.currentTime + TONE_SECONDS);
  }
}
