"""Template grammar that turns dialogue acts into utterances.

Many paraphrases per act, industry slots, and noise (fillers, typos, casing),
so that text reveals the acts only partially: a share of turns use a neutral
paraphrase that several acts share ("Okay, I see."), which keeps the task from
being a lookup of act names.

Text uses Python's `random.Random` (seeded per shard from the numpy seed
sequence): per-call cost matters at 10M turns, and for scalar draws it is much
cheaper than a numpy Generator call.
"""

from __future__ import annotations

import random

from salesrl_jax.sim.industries import Industry

TEMPLATES: dict[str, tuple[str, ...]] = {
    # rep acts
    "opening": (
        "Hi {cust}, this is {rep} from {company}. Thanks for taking the time today.",
        "Good morning {cust}! {rep} here with {company}. Is now still a good time?",
        "Hello, {rep} from {company}. I saw you were looking at {product} and wanted to reach out.",
        "Hey {cust}, thanks for jumping on. I'm {rep}, I look after new customers at {company}.",
        "Hi there, {rep} calling from {company}. How's your week going so far?",
    ),
    "discovery_question": (
        "What made you start looking at options like {product}?",
        "Can you walk me through how you handle this today?",
        "What's the biggest headache for you right now when it comes to {pain}?",
        "Who else is affected when {pain} happens?",
        "If you could fix one thing this quarter, what would it be?",
        "How are you dealing with {pain} at the moment?",
    ),
    "needs_summary": (
        "So if I heard you right, {pain} is the main issue, and you want to {benefit}.",
        "Let me make sure I've got this: the priority is to {benefit}, mostly because of {pain}.",
        "Okay, so the goal is really to {benefit}. Did I miss anything?",
        "Just to recap, {pain} is costing you time and you'd like to {benefit}.",
    ),
    "value_pitch": (
        "{product} comes with {feature}, which is exactly what helps teams {benefit}.",
        "What most people love about {product} is {feature}. It lets you {benefit}.",
        "With {feature} you can {benefit}, and that usually takes care of {pain}.",
        "Honestly, {product} was built for this. {feature} alone helps you {benefit}.",
        "The big difference with us is {feature}, so you {benefit} without the hassle.",
    ),
    "social_proof": (
        "A customer of ours in a similar spot switched from {competitor} and managed to {benefit} within two months.",
        "We work with a lot of teams like yours; most of them {benefit} in the first quarter.",
        "One of our clients had the same problem with {pain}, and {product} sorted it out.",
        "Our reviews are really strong on exactly this point, people mention {feature} all the time.",
    ),
    "demo_offer": (
        "Would it help if I showed you {feature} in a quick demo?",
        "I can set up a trial of {product} so you can see it for yourself.",
        "How about a 20-minute walkthrough later this week?",
        "Want me to show you how {feature} works with your own data?",
    ),
    "objection_handling": (
        "That's a fair concern. A lot of people feel that way at first, but {feature} usually changes their mind.",
        "I hear you. What if we started small and you only pay once you see it {benefit}?",
        "Totally understand. Let me address that directly: {product} typically pays for itself.",
        "Good point, and I'd rather you raise it now. Here's how others handled it.",
        "That makes sense. Would it help if I put something together for {stakeholder}?",
    ),
    "pricing": (
        "For {product} you'd be looking at around {price} {unit}.",
        "Pricing starts at {price} {unit}, and that includes {feature}.",
        "The package we talked about comes to {price} {unit}.",
        "Let me give you a number: roughly {price} {unit}, all in.",
    ),
    "discount": (
        "If we can get this signed this month, I can take {pct}% off.",
        "I can offer you a {pct}% discount for the first year.",
        "Let me see what I can do... I can get you {pct}% off the list price.",
        "We have a promotion running, {pct}% off if you commit today.",
    ),
    "close_attempt": (
        "So, shall we go ahead and get you set up with {product}?",
        "Are you ready to move forward?",
        "If everything looks good, I can send the agreement over today. Sound good?",
        "Would you like to get started?",
        "What would it take for you to say yes today?",
    ),
    "next_step": (
        "Can we put a follow-up call in the calendar for next week?",
        "How about I send over a proposal and we reconnect on Thursday?",
        "Would it make sense to bring {stakeholder} into the next call?",
        "Let's book a time to go through the details together.",
    ),
    "wrap_won": (
        "Fantastic, I'll send the paperwork over right away. Welcome aboard!",
        "Great, thanks {cust}. You'll get a confirmation email shortly.",
        "Perfect. I'll get everything set up and we'll talk soon.",
    ),
    "wrap_lost": (
        "I understand. Thanks for your time, {cust}, and feel free to reach out anytime.",
        "No problem at all. I'll leave my details in case anything changes.",
        "Thanks for being upfront with me. Have a great day.",
    ),
    "wrap_follow_up": (
        "Thanks {cust}, I'll follow up by email with everything we discussed.",
        "Let me send you a summary and we'll pick this up again soon.",
        "I'll put some notes together and check back in next week.",
    ),
    # customer acts
    "share_need": (
        "Honestly, our biggest problem is {pain}.",
        "We've been struggling with {pain} for a while now.",
        "I really need something to help us {benefit}.",
        "The main thing for us is {pain}. It's been a nightmare.",
        "We want to {benefit}, that's really the priority.",
    ),
    "ask_question": (
        "How does {feature} actually work?",
        "Does {product} come with {feature}?",
        "What does onboarding look like?",
        "How long does it usually take to get up and running?",
        "Can you tell me more about {feature}?",
    ),
    "objection_price": (
        "That sounds expensive. I'm not sure we have the budget.",
        "Hmm, {price} {unit} is more than we wanted to spend.",
        "It's a bit pricey compared with what we pay now.",
        "I don't think we can afford that right now.",
    ),
    "objection_timing": (
        "The timing isn't great, we're in the middle of a lot right now.",
        "Maybe next quarter? It's just not a priority at the moment.",
        "I don't think we can take this on before the end of the year.",
        "Can we revisit this later? We're swamped.",
    ),
    "objection_authority": (
        "I'd need to run this by {stakeholder} first.",
        "It's not really my decision, {stakeholder} signs off on these things.",
        "Let me check with {stakeholder} before I commit to anything.",
        "I can't approve this on my own.",
    ),
    "objection_competitor": (
        "We're also talking to {competitor}, and their offer looks similar.",
        "Why would I pick you over {competitor}?",
        "Honestly, {competitor} quoted us less.",
        "We've been with {competitor} for years, switching sounds like a pain.",
    ),
    "buying_signal": (
        "That sounds really useful, actually.",
        "Okay, I like that. How soon could we start?",
        "That's exactly what we need.",
        "Interesting! What would the next steps be?",
        "Oh nice, that would save us a lot of trouble.",
    ),
    "hesitate": (
        "I'm not sure, I need to think about it.",
        "Hmm, I don't know.",
        "Maybe. Let me think.",
        "I'm still on the fence, to be honest.",
    ),
    "small_talk": (
        "Hi {rep}, doing well thanks, busy week!",
        "Sure, I've got a few minutes.",
        "Hey, yes, good timing actually.",
        "Doing fine, thanks for asking. How about you?",
    ),
    "agree": (
        "Alright, let's do it.",
        "Okay, you've convinced me. Send it over.",
        "Sounds good, let's move forward.",
        "Yes, let's get started.",
        "Fine, book it in.",
    ),
    "decline": (
        "I think we'll pass for now, thanks.",
        "It's not the right fit for us, sorry.",
        "No, I don't think this is for us.",
        "We've decided to go another way.",
    ),
    "disengage": (
        "Sorry, I have to jump on another call.",
        "I need to go, can you just email me?",
        "Look, I'm really busy, let's leave it here.",
        "I have to run.",
    ),
}

# Paraphrases several acts share: they carry no information about which act it was.
NEUTRAL_REP = ("Okay.", "Got it.", "Sure, that makes sense.", "Right, I see.", "Understood.")
NEUTRAL_CUSTOMER = ("Okay.", "I see.", "Right.", "Hmm, okay.", "Sure.", "Mm-hm.")
# Engaged customers elaborate: longer messages are an engagement signal.
ELABORATIONS = (
    " We've got about {team} people who would use it.",
    " I've been meaning to sort this out for a while.",
    " We looked into this last year too.",
    " {stakeholder} has been asking me about it.",
    " It comes up in almost every meeting.",
)
FILLERS = ("um, ", "uh, ", "so, ", "well, ", "you know, ", "like, ", "I mean, ")
FIRST_NAMES = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Riley", "Avery", "Drew",
               "Priya", "Chen", "Maria", "Omar", "Ines", "Kofi", "Lena", "Mateo", "Yuki", "Noah")
COMPANIES = ("Acme", "Northwind", "Brightside", "Summit", "BluePeak", "Evergreen", "Crestline", "Harbor")


def _pick(rng: random.Random, options: tuple):
    # int(random() * n) is cheaper than randrange(n), and this runs about ten times per turn.
    return options[int(rng.random() * len(options))]


def conversation_slots(rng: random.Random, industry: Industry) -> dict[str, str]:
    """Slots fixed for one conversation."""
    product, low, high = _pick(rng, industry.products)
    price = int(rng.uniform(low, high))
    return {
        "product": product,
        "price": f"${price:,}",
        "unit": industry.price_unit,
        "competitor": _pick(rng, industry.competitors),
        "stakeholder": _pick(rng, industry.stakeholders),
        "rep": _pick(rng, FIRST_NAMES),
        "cust": _pick(rng, FIRST_NAMES),
        "company": _pick(rng, COMPANIES) + " " + industry.company_suffix,
        "pct": str(rng.choice((5, 10, 15, 20))),
        "team": str(rng.randrange(3, 400)),
    }


def add_noise(rng: random.Random, text: str, noise: float) -> str:
    """Fillers, one typo, lower-casing without punctuation; each with probability ``noise`` scaled."""
    if noise <= 0:
        return text
    draws = (rng.random(), rng.random(), rng.random())
    if draws[0] < 0.5 * noise:
        text = _pick(rng, FILLERS) + text[0].lower() + text[1:]
    if draws[1] < 0.4 * noise and len(text) > 8:
        i = rng.randrange(1, len(text) - 2)
        if text[i].isalpha() and text[i + 1].isalpha():
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if draws[2] < 0.3 * noise:
        text = text.lower().rstrip(".!")
    return text


def render_turn(rng: random.Random, act: str, industry: Industry, slots: dict[str, str], *,
                customer: bool, interest: int, noise: float, ambiguity: float) -> str:
    """One utterance for ``act``; ``interest`` (latent level 0..6) drives elaboration."""
    if act not in ("agree", "decline", "disengage") and not act.startswith("wrap") and act != "opening" \
            and rng.random() < ambiguity:
        pool = NEUTRAL_CUSTOMER if customer else NEUTRAL_REP
        text = _pick(rng, pool)
    else:
        options = TEMPLATES[act]
        turn_slots = dict(slots)
        turn_slots["pain"] = _pick(rng, industry.pains)
        turn_slots["benefit"] = _pick(rng, industry.benefits)
        turn_slots["feature"] = _pick(rng, industry.features)
        text = _pick(rng, options).format_map(turn_slots)
        if customer and rng.random() < 0.12 + 0.1 * interest:
            text += _pick(rng, ELABORATIONS).format_map(turn_slots)
    return add_noise(rng, text[0].upper() + text[1:], noise)
