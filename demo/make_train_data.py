"""Write demo/train_data.jsonl: JARVIS-style (prompt, answer) pairs authored for the demo adapter.

The examples are built from templates below (apps, cities, phrasings, misrecognitions), seeded, and
checked to be disjoint from the benchmark prompts in benchmark_config.json: no benchmark prompt
(normalised) appears in a training prompt and no training prompt has a fuzzy ratio >= 90 with one.

    uv run python demo/make_train_data.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from jarvis_bench.config import PROJECT_ROOT, load  # noqa: E402
from jarvis_bench.text import overlaps  # noqa: E402

SEED = 7


def call(name: str, **args: object) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "</tool_call>"


APPS = {  # spoken name -> (display name, argument)
    "firefox": ("Firefox", "firefox"), "steam": ("Steam", "steam"), "vs code": ("VS Code", "vscode"),
    "obs": ("OBS", "obs"), "le bloc-notes": ("le Bloc-notes", "notepad"), "word": ("Word", "word"),
    "excel": ("Excel", "excel"), "vlc": ("VLC", "vlc"), "telegram": ("Telegram", "telegram"),
    "outlook": ("Outlook", "outlook"), "teams": ("Teams", "teams"), "l'explorateur": ("l'Explorateur", "explorer"),
    "slack": ("Slack", "slack"), "blender": ("Blender", "blender"), "edge": ("Edge", "edge"),
}
CLOSE_ONLY = {"discord": ("Discord", "discord"), "chrome": ("Chrome", "chrome"), "spotify": ("Spotify", "spotify")}
CITIES = ["Nantes", "Bordeaux", "Lille", "Toulouse", "Nice", "Strasbourg", "Rennes", "Grenoble", "Brest", "Dijon"]
SYMBOLS = {"l'ethereum": "ETH", "le solana": "SOL", "le dogecoin": "DOGE", "le xrp": "XRP", "l'ether": "ETH"}
GENRES = ["rock", "lofi", "musique classique", "rap", "électro", "la playlist du matin", "Daft Punk", "reggae"]
SEARCHES = ["les horaires du train pour Lyon", "une recette de crêpes", "la date de sortie de Windows 12",
            "le prix d'une RTX 5090", "la définition de LoRA", "les résultats du match"]
NUMBERS = {3: "trois", 4: "quatre", 7: "sept", 12: "douze", 15: "quinze", 25: "vingt-cinq", 30: "trente", 45: "quarante-cinq"}

ANSWER = {
    "open_app_tool": lambda a, d: f"J'ouvre {d}.",
    "close_app_tool": lambda a, d: f"Je ferme {d}.",
    "volume_up_tool": lambda a, d: "Je monte le son.",
    "volume_down_tool": lambda a, d: "Je baisse le son.",
    "mute_tool": lambda a, d: "Son coupé.",
    "cluster_status_tool": lambda a, d: "Voici l'état du cluster et de ses nœuds.",
    "gpu_status_tool": lambda a, d: "Voici l'état du GPU : charge, mémoire et température.",
    "mexc_scan_tool": lambda a, d: f"Je lance le scan MEXC{' sur ' + a['symbol'] if a.get('symbol') else ''}.",
    "weather_tool": lambda a, d: f"Voici la météo à {a['city']}{' pour demain' if a.get('day') else ''}.",
    "timer_tool": lambda a, d: f"Minuteur de {a['minutes']} minutes lancé.",
    "screenshot_tool": lambda a, d: "Capture d'écran effectuée.",
    "lock_screen_tool": lambda a, d: "Je verrouille la session et l'écran.",
    "play_music_tool": lambda a, d: f"Je mets de la musique : {a['query']}.",
    "web_search_tool": lambda a, d: f"Je cherche « {a['query']} » sur le web.",
    "system_info_tool": lambda a, d: "Voici l'utilisation CPU, RAM et disque.",
}


def answer(tool: str, args: dict, display: str = "") -> str:
    return ANSWER[tool](args, display) + "\n" + call(tool, **args)


def commands() -> list[tuple[str, str]]:
    ex: list[tuple[str, str]] = []
    for spoken, (disp, arg) in APPS.items():
        for verb in ["ouvre", "lance", "démarre", "tu peux ouvrir", "ouvre-moi"]:
            ex.append((f"{verb} {spoken}", answer("open_app_tool", {"app": arg}, disp)))
    for spoken, (disp, arg) in {**APPS, **CLOSE_ONLY}.items():
        for verb in ["ferme", "quitte", "tu peux fermer"]:
            ex.append((f"{verb} {spoken}", answer("close_app_tool", {"app": arg}, disp)))
    for p in ["augmente le volume", "plus fort", "volume plus", "monte un peu le volume", "on n'entend pas assez",
              "pousse le volume", "je n'entends pas bien la vidéo", "mets plus fort s'il te plaît"]:
        ex.append((p, answer("volume_up_tool", {})))
    for p in ["diminue le volume", "moins fort", "volume moins", "baisse un peu le volume", "ça fait mal aux oreilles",
              "c'est bruyant, réduis", "mets moins fort s'il te plaît"]:
        ex.append((p, answer("volume_down_tool", {})))
    for p in ["silence", "mode muet", "mute", "coupe tout le son du pc", "plus aucun bruit s'il te plaît", "chut"]:
        ex.append((p, answer("mute_tool", {})))
    for p in ["état du cluster", "le cluster va bien ?", "affiche les nœuds", "donne-moi la charge du cluster",
              "combien de nœuds sont en ligne ?", "vérifie les serveurs de calcul", "santé du cluster"]:
        ex.append((p, answer("cluster_status_tool", {})))
    for p in ["état du gpu", "température du gpu", "combien de vram est utilisée ?", "la carte graphique est occupée ?",
              "charge de la carte vidéo", "le gpu est à combien ?"]:
        ex.append((p, answer("gpu_status_tool", {})))
    for p in ["lance le scan mexc", "scanne le marché crypto", "analyse mexc", "des signaux sur mexc ?", "scan du marché"]:
        ex.append((p, answer("mexc_scan_tool", {})))
    for spoken, sym in SYMBOLS.items():
        for t in ["comment va {s} ?", "scanne {s} sur mexc", "quel est le prix de {s} ?"]:
            ex.append((t.format(s=spoken), answer("mexc_scan_tool", {"symbol": sym})))
    for city in CITIES:
        ex.append((f"météo à {city}", answer("weather_tool", {"city": city})))
        ex.append((f"quel temps fait-il à {city} ?", answer("weather_tool", {"city": city})))
        ex.append((f"il va pleuvoir demain à {city} ?", answer("weather_tool", {"city": city, "day": "demain"})))
    for n, word in NUMBERS.items():
        ex.append((f"minuteur {n} minutes", answer("timer_tool", {"minutes": n})))
        ex.append((f"mets un minuteur de {word} minutes", answer("timer_tool", {"minutes": n})))
        ex.append((f"rappelle-moi dans {n} minutes", answer("timer_tool", {"minutes": n})))
    for p in ["capture d'écran", "screenshot", "prends une capture", "garde une image de l'écran", "capture ce que je vois"]:
        ex.append((p, answer("screenshot_tool", {})))
    for p in ["verrouille la session", "verrouille le pc", "lock", "je m'absente, bloque l'ordinateur",
              "personne ne doit toucher au pc", "ferme ma session à clé"]:
        ex.append((p, answer("lock_screen_tool", {})))
    for g in GENRES:
        ex.append((f"joue {g}", answer("play_music_tool", {"query": g})))
        ex.append((f"j'ai envie d'écouter {g}", answer("play_music_tool", {"query": g})))
    for q in SEARCHES:
        ex.append((f"cherche {q}", answer("web_search_tool", {"query": q})))
        ex.append((f"trouve-moi {q} sur internet", answer("web_search_tool", {"query": q})))
    for p in ["utilisation du processeur", "combien de ram il reste ?", "le pc rame, regarde les ressources",
              "état du système", "le disque est plein ?"]:
        ex.append((p, answer("system_info_tool", {})))
    polite = "Avec plaisir, je reste à votre disposition."
    for p in ["merci beaucoup", "merci, c'est parfait", "super, merci jarvis", "c'est bon, tu peux disposer"]:
        ex.append((p, polite))
    for p in ["bonjour jarvis", "salut", "tu es là ?", "hé jarvis"]:
        ex.append((p, "Bonjour, je vous écoute. Que puis-je faire pour vous ?"))
    return ex


# Misrecognised speech -> (what the user meant, tool, args, display)
MISHEARD = [
    ("ouvre fire fox", "ouvre firefox", "open_app_tool", {"app": "firefox"}, "Firefox"),
    ("lance stime", "lance steam", "open_app_tool", {"app": "steam"}, "Steam"),
    ("ouvre vé esse code", "ouvre vs code", "open_app_tool", {"app": "vscode"}, "VS Code"),
    ("lance eau bé esse", "lance obs", "open_app_tool", {"app": "obs"}, "OBS"),
    ("ouvre ex celle", "ouvre excel", "open_app_tool", {"app": "excel"}, "Excel"),
    ("ferme ouorde", "ferme word", "close_app_tool", {"app": "word"}, "Word"),
    ("ferme télé gramme", "ferme telegram", "close_app_tool", {"app": "telegram"}, "Telegram"),
    ("quitte out look", "quitte outlook", "close_app_tool", {"app": "outlook"}, "Outlook"),
    ("monte le vol hume", "monte le volume", "volume_up_tool", {}, ""),
    ("plue fort", "plus fort", "volume_up_tool", {}, ""),
    ("baise le volume", "baisse le volume", "volume_down_tool", {}, ""),
    ("moin fore", "moins fort", "volume_down_tool", {}, ""),
    ("mode mué", "mode muet", "mute_tool", {}, ""),
    ("état du clusteur", "état du cluster", "cluster_status_tool", {}, ""),
    ("affiche les neux", "affiche les nœuds", "cluster_status_tool", {}, ""),
    ("état du gé pé u", "état du gpu", "gpu_status_tool", {}, ""),
    ("analyse mexé", "analyse mexc", "mexc_scan_tool", {}, ""),
    ("scanne le marcher cripto", "scanne le marché crypto", "mexc_scan_tool", {}, ""),
    ("météo à nante", "météo à nantes", "weather_tool", {"city": "Nantes"}, ""),
    ("quel temps à bord o", "quel temps à bordeaux", "weather_tool", {"city": "Bordeaux"}, ""),
    ("météo a tout louse", "météo à toulouse", "weather_tool", {"city": "Toulouse"}, ""),
    ("mets un minuteuse de trois minutes", "mets un minuteur de trois minutes", "timer_tool", {"minutes": 3}, ""),
    ("minute heure quinze minutes", "minuteur quinze minutes", "timer_tool", {"minutes": 15}, ""),
    ("prends une captur décran", "prends une capture d'écran", "screenshot_tool", {}, ""),
    ("verrouy la session", "verrouille la session", "lock_screen_tool", {}, ""),
    ("vérou ille le pc", "verrouille le pc", "lock_screen_tool", {}, ""),
    ("joue du roque", "joue du rock", "play_music_tool", {"query": "rock"}, ""),
    ("joue dafte punk", "joue daft punk", "play_music_tool", {"query": "Daft Punk"}, ""),
    ("cherche une recette de crèpe", "cherche une recette de crêpes", "web_search_tool", {"query": "recette de crêpes"}, ""),
    ("utilisation du processe heure", "utilisation du processeur", "system_info_tool", {}, ""),
]


def corrections() -> list[tuple[str, str]]:
    return [
        (heard, f"Vous vouliez dire « {meant} ». " + answer(tool, args, disp))
        for heard, meant, tool, args, disp in MISHEARD
    ]


def build() -> list[dict[str, str]]:
    cfg = load(PROJECT_ROOT / "benchmark_config.json")
    bench = [p.prompt for p in cfg.prompts]
    rows = [{"prompt": p, "response": r} for p, r in commands() + corrections()]
    kept = [r for r in rows if not overlaps(r["prompt"], bench)]
    dropped = len(rows) - len(kept)
    if dropped:
        print(f"dropped {dropped} examples too close to a benchmark prompt", file=sys.stderr)
    random.Random(SEED).shuffle(kept)
    return kept


def main() -> int:
    rows = build()
    out = HERE / "train_data.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} examples to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
