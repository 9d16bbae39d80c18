/**
 * i18n.js: the user interface strings, in English and Korean.
 *
 * It exists so that every string a person reads comes from one table, chosen
 * once from the browser's languages (navigator.languages / language): Korean
 * when the first supported preference is Korean, English otherwise. Pages call
 * `t(key, params)` for strings built at run time and `localize(root)` for the
 * template's static text, marked with attributes:
 *   data-i18n="key"              -> textContent
 *   data-i18n-label="key"        -> aria-label
 *   data-i18n-placeholder="key"  -> placeholder
 *   data-i18n-title="key"        -> title
 * Strings only ever reach the DOM through textContent and attributes.
 */

const STRINGS = {
  en: {
    "conn.connecting": "Connecting…",
    "conn.connected": "Connected",
    "conn.reconnecting": "Reconnecting…",
    "conn.reconnected": "Reconnected",
    "conn.failed": "Disconnected. Reload the page to try again.",
    "conn.kicked": "Disconnected by an administrator.",
    "admin.kicked": "An administrator disconnected you. Reload the page to come back.",
    "admin.revoked": "An administrator ended your session. Reload the page to start a new one.",
    "admin.roomClosed": "An administrator closed this room. Its history was deleted.",
    "admin.callEnded": "An administrator ended the call.",
    "admin.historyCleared": "An administrator deleted the chat history.",

    "home.back": "← Home",
    "home.nicknameTitle": "Your nickname",
    "home.youAppearAs": "You appear as",
    "home.nickname": "Nickname",
    "home.newNickname": "New nickname",
    "home.save": "Save",
    "home.saved": "Nickname saved.",
    "home.unlisted": "If it is new, keep it out of the public list (people come with its link)",
    "home.newPassword": "Password for a new room (optional)",
    "home.nicknameBlank": "A nickname needs at least one character that is not a space.",
    "home.roomBlank": "A room name needs at least one character that is not a space.",
    "home.roomTooLong": "Room names are at most {n} characters; this one has {len}.",
    "home.roomInvalid": "That room name cannot be used: room names are 1 to {n} characters, without control characters.",
    "home.joinTitle": "Join or create a room",
    "home.roomName": "Room name",
    "home.enter": "Enter",
    "home.roomsTitle": "Live rooms",
    "home.noRooms": "No rooms yet. Create one above.",
    "home.online": "{n} online",
    "home.people": "{n} people",
    "home.onePerson": "1 person",

    "room.online": " online",
    "room.chat": "Chat",
    "room.members": "Members",
    "room.messages": "Messages",
    "room.message": "Message",
    "room.writeMessage": "Write a message…",
    "room.send": "Send",
    "room.loadOlder": "Load older messages",
    "room.you": " (you)",
    "room.joined": "{name} joined",
    "room.left": "{name} left",
    "room.renamed": "{old} is now {new}",
    "room.openChat": "Chat",
    "room.said": "{name}: {text}",
    "room.unlisted": "Unlisted",
    "room.unlistedTitle": "Not in the public room list: people come with its link",
    "room.protected": "Password",
    "room.passwordAsk": "This room has a password.",
    "room.passwordEnter": "Enter room",
    "room.wrongPassword": "That is not this room's password.",
    "room.messageHint": "Enter sends; Shift+Enter starts a new line.",
    "room.copyInvite": "Copy invite link",
    "room.inviteCopied": "Invite link copied.",
    "room.inviteManual": "Copy this link: {url}",
    "room.closeChat": "Close chat",
    "room.inCall": "in the call",

    "mod.host": "Host",
    "mod.hostControls": "Host controls",
    "mod.lock": "Lock the room: nobody new comes in",
    "mod.lobby": "Lobby: newcomers wait until you let them in",
    "mod.waiting": "Waiting to enter",
    "mod.admit": "Admit",
    "mod.deny": "Deny",
    "mod.admitName": "Admit {name}",
    "mod.denyName": "Deny {name}",
    "mod.actionsFor": "Actions for {name}",
    "mod.makeHost": "Make host",
    "mod.mute": "Mute",
    "mod.mutedDone": "You asked {name}'s microphone to turn off.",
    "mod.removeCall": "Remove from call",
    "mod.removeRoom": "Remove from room",
    "mod.mutedBy": "{name} muted your microphone. You can turn it back on.",
    "mod.mutedByAdmin": "An administrator muted your microphone. You can turn it back on.",
    "mod.removedFromCall": "The host removed you from the call.",
    "mod.removedFromRoom": "The host removed you from this room.",
    "mod.removed": "You were removed from this room. You can come back later.",
    "mod.inLobby": "Waiting for the host to let you in…",
    "mod.denied": "The host did not let you in.",
    "mod.askAgain": "Ask again",
    "mod.locked": "This room is locked: its host lets nobody new in.",
    "mod.badgeLocked": "Locked",
    "mod.youHost": "You are the host now.",
    "mod.nowHost": "{name} is the host now.",
    "mod.roomLocked": "The room is locked: nobody new comes in.",
    "mod.roomUnlocked": "The room is unlocked.",
    "mod.lobbyOn": "Newcomers now wait in the lobby.",
    "mod.lobbyOff": "The lobby is off: newcomers come straight in.",
    "mod.someoneWaiting": "{name} is waiting to enter.",

    "call.title": "Video call",
    "call.preview": "Preview",
    "call.pin": "Pin {name}",
    "call.speakerView": "Speaker view",
    "call.page": "Page {page} of {pages}",
    "call.pages": "Pages of the call",
    "call.prevPage": "Previous page",
    "call.nextPage": "Next page",
    "call.camera": "Camera",
    "call.microphone": "Microphone",
    "call.micLevel": "Microphone level",
    "call.noCameraOption": "No camera",
    "call.noMicOption": "No microphone",
    "call.deviceN": "{kind} {n}",
    "call.startPreview": "Check camera and microphone",
    "call.join": "Join call",
    "call.joining": "Joining…",
    "call.leave": "Leave call",
    "call.mute": "Mute",
    "call.unmute": "Unmute",
    "call.cameraOff": "Camera off",
    "call.cameraOn": "Camera on",
    "call.share": "Share screen",
    "call.stopShare": "Stop sharing",
    "call.devices": "Devices",
    "call.you": "You",
    "call.speaking": "Speaking",
    "call.raiseHand": "Raise hand",
    "call.lowerHand": "Lower hand",
    "call.handN": "Hand raised, {n} in line",
    "call.react": "React",
    "call.reactions": "Reactions",
    "call.reacted": "{name} reacted {emoji}",
    "call.shortcuts": "Keyboard shortcuts",
    "call.keyMute": "Mute or unmute the microphone",
    "call.keyCamera": "Turn the camera off or on",
    "call.keyHand": "Raise or lower your hand",
    "call.keyHelp": "Show these shortcuts",
    "call.keysWhere": "They work in the call, except while typing in a text field.",
    "call.close": "Close",
    "call.yourName": "Your name",
    "call.nameBlank": "Your name needs at least one character that is not a space.",
    "call.muted": "Muted",
    "call.cameraIsOff": "Camera is off",
    "call.sharing": "Sharing screen",
    "call.screenOf": "{name}'s screen",
    "call.participants": "{n} in the call",
    "call.state.new": "Connecting…",
    "call.state.connecting": "Connecting…",
    "call.state.connected": "Connected",
    "call.state.disconnected": "Connection unstable…",
    "call.state.reconnecting": "Reconnecting…",
    "call.state.failed": "Connection failed",
    "call.lostPeer": "Lost the connection to {name}.",
    "call.hint": "Others in this room can see and hear you once you join.",

    "err.insecure":
      "Calls need HTTPS: this browser only allows the camera and microphone on a secure (https://) address. Chat still works.",
    "err.insecureHow":
      "To make calls work, whoever runs this server turns HTTPS on: `[tls] self_signed = true` (or a certificate: `cert` and `key`) in noom.toml, then a restart; everyone then opens the https:// address.",
    "err.insecureLink": "How to turn on HTTPS",
    "err.denied":
      "Camera and microphone access was denied. Allow it in the browser's site settings, then try again. Chat still works.",
    "err.noDevice": "No camera or microphone was found. You can still join to watch and listen, and chat.",
    "err.noCamera": "No camera was found: joining with the microphone only.",
    "err.noMic": "No microphone was found: joining with the camera only.",
    "err.busy": "The camera or microphone is in use by another program. Close it and try again.",
    "err.media": "Could not start the camera or microphone ({detail}).",
    "err.roomFull": "The call is full: at most {n} people can take part. Chat still works.",
    "err.callFailed": "Could not join the call: {detail}",
    "err.shareFailed": "Screen sharing did not start ({detail}).",
    "err.shareUnsupported": "This browser cannot share the screen.",
    "err.switchFailed": "Could not switch to that device ({detail}).",
    // What a refusal means, by its code (docs/protocol.md "Errors"). English
    // pages show the server's own message, which says more; these stand in
    // when it has none, and are what Korean pages show.
    "code.invalid_argument": "The request was not understood.",
    "code.invalid_room": "That room name cannot be used, or the room does not exist.",
    "code.invalid_nickname": "That nickname cannot be used: check its length and characters.",
    "code.invalid_message": "That message cannot be sent: it is empty or too long.",
    "code.not_in_room": "You are not in this room.",
    "code.not_in_call": "Not in the call.",
    "code.room_full": "The room or the call is full.",
    "code.rate_limited": "Too many requests: wait a moment and try again.",
    "code.internal": "The server could not do that (its storage failed). Nothing was saved.",
    "code.unconfirmed": "The server could not confirm the message was saved. Do not send it again: if it was saved, it will appear.",
    "code.unavailable": "The media server is not available. Try again in a moment.",
    "code.password_required": "This room needs a password.",
    "code.wrong_password": "That password is wrong.",
    "code.not_host": "Only the room's host can do that.",
    "code.removed": "The host removed you from this room. You cannot come back for a while.",
    "code.room_locked": "The room is locked: nobody new can enter.",
    "code.in_lobby": "Waiting in the lobby until the host lets you in.",
    "code.offline": "Not connected to the server.",
    "code.timeout": "The server did not answer in time.",
  },
  ko: {
    "conn.connecting": "연결 중…",
    "conn.connected": "연결됨",
    "conn.reconnecting": "다시 연결 중…",
    "conn.reconnected": "다시 연결됨",
    "conn.failed": "연결이 끊겼습니다. 페이지를 새로 고쳐 주세요.",
    "conn.kicked": "관리자가 연결을 끊었습니다.",
    "admin.kicked": "관리자가 연결을 끊었습니다. 다시 들어오려면 페이지를 새로 고쳐 주세요.",
    "admin.revoked": "관리자가 세션을 종료했습니다. 새 세션을 시작하려면 페이지를 새로 고쳐 주세요.",
    "admin.roomClosed": "관리자가 이 방을 닫았습니다. 대화 기록이 삭제되었습니다.",
    "admin.callEnded": "관리자가 통화를 종료했습니다.",
    "admin.historyCleared": "관리자가 대화 기록을 삭제했습니다.",

    "home.back": "← 홈",
    "home.nicknameTitle": "내 닉네임",
    "home.youAppearAs": "표시 이름:",
    "home.nickname": "닉네임",
    "home.newNickname": "새 닉네임",
    "home.save": "저장",
    "home.saved": "닉네임을 저장했습니다.",
    "home.unlisted": "새 방이면 공개 목록에 올리지 않기 (링크로 들어옵니다)",
    "home.newPassword": "새 방의 비밀번호 (선택)",
    "home.nicknameBlank": "닉네임에는 공백이 아닌 글자가 하나 이상 있어야 합니다.",
    "home.roomBlank": "방 이름에는 공백이 아닌 글자가 하나 이상 있어야 합니다.",
    "home.roomTooLong": "방 이름은 최대 {n}자입니다. 입력한 이름은 {len}자입니다.",
    "home.roomInvalid": "사용할 수 없는 방 이름입니다. 방 이름은 제어 문자 없이 1~{n}자여야 합니다.",
    "home.joinTitle": "방 입장 또는 만들기",
    "home.roomName": "방 이름",
    "home.enter": "입장",
    "home.roomsTitle": "열린 방",
    "home.noRooms": "아직 방이 없습니다. 위에서 만들어 보세요.",
    "home.online": "{n}명 접속 중",
    "home.people": "{n}명",
    "home.onePerson": "1명",

    "room.online": "명 접속 중",
    "room.chat": "채팅",
    "room.members": "참여자",
    "room.messages": "메시지",
    "room.message": "메시지",
    "room.writeMessage": "메시지를 입력하세요…",
    "room.send": "보내기",
    "room.loadOlder": "이전 메시지 더 보기",
    "room.you": " (나)",
    "room.joined": "{name} 님이 들어왔습니다",
    "room.left": "{name} 님이 나갔습니다",
    "room.renamed": "{old} 님의 새 이름: {new}",
    "room.openChat": "채팅",
    "room.said": "{name}: {text}",
    "room.unlisted": "목록 비공개",
    "room.unlistedTitle": "공개 방 목록에 나오지 않습니다. 링크로 들어옵니다.",
    "room.protected": "비밀번호",
    "room.passwordAsk": "이 방에는 비밀번호가 있습니다.",
    "room.passwordEnter": "입장",
    "room.wrongPassword": "이 방의 비밀번호가 아닙니다.",
    "room.messageHint": "Enter로 보내고 Shift+Enter로 줄을 바꿉니다.",
    "room.copyInvite": "초대 링크 복사",
    "room.inviteCopied": "초대 링크를 복사했습니다.",
    "room.inviteManual": "이 링크를 복사하세요: {url}",
    "room.closeChat": "채팅 닫기",
    "room.inCall": "통화 중",

    "mod.host": "호스트",
    "mod.hostControls": "호스트 도구",
    "mod.lock": "방 잠그기: 새로 들어올 수 없음",
    "mod.lobby": "대기실: 내가 허락해야 들어옴",
    "mod.waiting": "입장 대기 중",
    "mod.admit": "허락",
    "mod.deny": "거절",
    "mod.admitName": "{name}님 허락",
    "mod.denyName": "{name}님 거절",
    "mod.actionsFor": "{name}님 관리",
    "mod.makeHost": "호스트로 지정",
    "mod.mute": "음소거",
    "mod.mutedDone": "{name}님의 마이크를 끄도록 했습니다.",
    "mod.removeCall": "통화에서 내보내기",
    "mod.removeRoom": "방에서 내보내기",
    "mod.mutedBy": "{name}님이 내 마이크를 껐습니다. 직접 다시 켤 수 있습니다.",
    "mod.mutedByAdmin": "관리자가 내 마이크를 껐습니다. 직접 다시 켤 수 있습니다.",
    "mod.removedFromCall": "호스트가 나를 통화에서 내보냈습니다.",
    "mod.removedFromRoom": "호스트가 나를 이 방에서 내보냈습니다.",
    "mod.removed": "이 방에서 내보내졌습니다. 나중에 다시 들어올 수 있습니다.",
    "mod.inLobby": "호스트가 입장을 허락하기를 기다리는 중…",
    "mod.denied": "호스트가 입장을 허락하지 않았습니다.",
    "mod.askAgain": "다시 요청",
    "mod.locked": "잠긴 방입니다: 호스트가 새로 들어오는 사람을 받지 않습니다.",
    "mod.badgeLocked": "잠김",
    "mod.youHost": "이제 내가 호스트입니다.",
    "mod.nowHost": "이제 {name}님이 호스트입니다.",
    "mod.roomLocked": "방이 잠겼습니다: 새로 들어올 수 없습니다.",
    "mod.roomUnlocked": "방 잠금이 풀렸습니다.",
    "mod.lobbyOn": "이제 새로 오는 사람은 대기실에서 기다립니다.",
    "mod.lobbyOff": "대기실이 꺼졌습니다: 바로 들어올 수 있습니다.",
    "mod.someoneWaiting": "{name}님이 입장을 기다립니다.",

    "call.title": "영상 통화",
    "call.preview": "미리 보기",
    "call.pin": "{name} 고정",
    "call.speakerView": "발표자 보기",
    "call.page": "{pages}쪽 중 {page}쪽",
    "call.pages": "통화 화면 쪽",
    "call.prevPage": "이전 쪽",
    "call.nextPage": "다음 쪽",
    "call.camera": "카메라",
    "call.microphone": "마이크",
    "call.micLevel": "마이크 음량",
    "call.noCameraOption": "카메라 없음",
    "call.noMicOption": "마이크 없음",
    "call.deviceN": "{kind} {n}",
    "call.startPreview": "카메라와 마이크 확인",
    "call.join": "통화 참여",
    "call.joining": "참여하는 중…",
    "call.leave": "통화 나가기",
    "call.mute": "음소거",
    "call.unmute": "음소거 해제",
    "call.cameraOff": "카메라 끄기",
    "call.cameraOn": "카메라 켜기",
    "call.share": "화면 공유",
    "call.stopShare": "공유 중지",
    "call.devices": "장치",
    "call.you": "나",
    "call.speaking": "말하는 중",
    "call.raiseHand": "손 들기",
    "call.lowerHand": "손 내리기",
    "call.handN": "손 듦, {n}번째",
    "call.react": "반응",
    "call.reactions": "반응",
    "call.reacted": "{name} 님의 반응 {emoji}",
    "call.shortcuts": "단축키",
    "call.keyMute": "마이크 음소거 또는 해제",
    "call.keyCamera": "카메라 끄기 또는 켜기",
    "call.keyHand": "손 들기 또는 내리기",
    "call.keyHelp": "단축키 보기",
    "call.keysWhere": "통화 중에 쓸 수 있으며, 입력란에 글을 쓰는 동안에는 작동하지 않습니다.",
    "call.close": "닫기",
    "call.yourName": "내 이름",
    "call.nameBlank": "이름에는 공백이 아닌 글자가 하나 이상 있어야 합니다.",
    "call.muted": "음소거됨",
    "call.cameraIsOff": "카메라 꺼짐",
    "call.sharing": "화면 공유 중",
    "call.screenOf": "{name} 님의 화면",
    "call.participants": "{n}명 통화 중",
    "call.state.new": "연결 중…",
    "call.state.connecting": "연결 중…",
    "call.state.connected": "연결됨",
    "call.state.disconnected": "연결 불안정…",
    "call.state.reconnecting": "다시 연결 중…",
    "call.state.failed": "연결 실패",
    "call.lostPeer": "{name} 님과의 연결이 끊겼습니다.",
    "call.hint": "참여하면 이 방의 다른 사람들이 나를 보고 들을 수 있습니다.",

    "err.insecure":
      "통화에는 HTTPS가 필요합니다: 브라우저는 보안(https://) 주소에서만 카메라와 마이크를 허용합니다. 채팅은 계속 쓸 수 있습니다.",
    "err.insecureHow":
      "통화를 쓰려면 서버 운영자가 HTTPS를 켜야 합니다: noom.toml에 `[tls] self_signed = true`(또는 인증서 `cert`와 `key`)를 넣고 다시 시작한 뒤, 모두 https:// 주소로 접속하세요.",
    "err.insecureLink": "HTTPS 켜는 방법",
    "err.denied":
      "카메라와 마이크 권한이 거부되었습니다. 브라우저의 사이트 설정에서 허용한 뒤 다시 시도하세요. 채팅은 계속 쓸 수 있습니다.",
    "err.noDevice": "카메라나 마이크를 찾을 수 없습니다. 참여해서 보고 들을 수 있고, 채팅도 됩니다.",
    "err.noCamera": "카메라를 찾을 수 없어 마이크만으로 참여합니다.",
    "err.noMic": "마이크를 찾을 수 없어 카메라만으로 참여합니다.",
    "err.busy": "다른 프로그램이 카메라나 마이크를 쓰고 있습니다. 그 프로그램을 닫고 다시 시도하세요.",
    "err.media": "카메라나 마이크를 시작하지 못했습니다 ({detail}).",
    "err.roomFull": "통화 인원이 가득 찼습니다: 최대 {n}명까지 참여할 수 있습니다. 채팅은 계속 쓸 수 있습니다.",
    "err.callFailed": "통화에 참여하지 못했습니다: {detail}",
    "err.shareFailed": "화면 공유를 시작하지 못했습니다 ({detail}).",
    "err.shareUnsupported": "이 브라우저는 화면 공유를 지원하지 않습니다.",
    "err.switchFailed": "그 장치로 바꾸지 못했습니다 ({detail}).",
    "code.invalid_argument": "요청을 이해하지 못했습니다.",
    "code.invalid_room": "쓸 수 없는 방 이름이거나 없는 방입니다.",
    "code.invalid_nickname": "쓸 수 없는 닉네임입니다. 길이와 문자를 확인하세요.",
    "code.invalid_message": "보낼 수 없는 메시지입니다. 비어 있거나 너무 깁니다.",
    "code.not_in_room": "이 방에 들어와 있지 않습니다.",
    "code.not_in_call": "통화에 참여하고 있지 않습니다.",
    "code.room_full": "방이나 통화의 인원이 가득 찼습니다.",
    "code.rate_limited": "요청이 너무 많습니다. 잠시 뒤에 다시 시도하세요.",
    "code.internal": "서버가 처리하지 못했습니다(저장소 오류). 아무것도 저장되지 않았습니다.",
    "code.unconfirmed": "메시지가 저장되었는지 서버가 확인하지 못했습니다. 다시 보내지 마세요. 저장되었다면 곧 나타납니다.",
    "code.unavailable": "미디어 서버를 쓸 수 없습니다. 잠시 뒤에 다시 시도하세요.",
    "code.password_required": "이 방에는 비밀번호가 필요합니다.",
    "code.wrong_password": "비밀번호가 틀렸습니다.",
    "code.not_host": "방장만 할 수 있습니다.",
    "code.removed": "방장이 이 방에서 내보냈습니다. 한동안 다시 들어올 수 없습니다.",
    "code.room_locked": "방이 잠겨 있어 새로 들어올 수 없습니다.",
    "code.in_lobby": "방장이 들여보낼 때까지 대기실에서 기다립니다.",
    "code.offline": "서버에 연결되어 있지 않습니다.",
    "code.timeout": "서버가 제때 응답하지 않았습니다.",
  },
};

function pickLanguage() {
  const prefs = (navigator.languages && navigator.languages.length
    ? navigator.languages
    : [navigator.language || "en"]
  ).map((l) => String(l).toLowerCase());
  for (const pref of prefs) {
    const base = pref.split("-")[0];
    if (base in STRINGS) return base;
  }
  return "en";
}

/** The UI language: "en" or "ko". */
export const lang = pickLanguage();

/** The string for `key` in the UI language, with {name} placeholders filled in. */
export function t(key, params) {
  const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/**
 * What to show for a refused request (a ProtocolError or AdminError with a
 * `code`): in English the server's own message; in another language the
 * translation of its code, since the server speaks English only.
 */
export function errorText(err) {
  const code = err && err.code;
  const known = code && STRINGS.en[`code.${code}`] !== undefined;
  if (lang === "en" || !known) return (err && err.message) || (known ? t(`code.${code}`) : t("code.internal"));
  return t(`code.${code}`);
}

/** The English string for `key` (for data-testid-like stable names). */
export function en(key) {
  return STRINGS.en[key] ?? key;
}

/** Translate the static text of a subtree marked with data-i18n* attributes. */
export function localize(root = document) {
  if (root === document) document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) {
    el.setAttribute("title", t(el.dataset.i18nTitle));
  }
}
