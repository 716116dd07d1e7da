"""The 15 industries of the simulator: products, prices, vocabulary and typical objections.

Each industry shifts the latent customer population (how price-sensitive, how
contested by competitors, how much authority a first contact usually has) and
supplies the words the text grammar fills its slots with.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Industry:
    name: str
    products: tuple[tuple[str, int, int], ...]  # (product, price low, price high)
    price_unit: str  # "per month", "one-off", ...
    features: tuple[str, ...]
    pains: tuple[str, ...]
    benefits: tuple[str, ...]
    competitors: tuple[str, ...]
    stakeholders: tuple[str, ...]
    competition: float  # 0..1: how often a rival offer is on the table
    price_sensitivity: float  # 0..1: pushes budget fit down
    authority: float  # 0..1: how often the first contact can sign alone

    @property
    def company_suffix(self) -> str:
        """The kind of company a rep of this industry works for ("Acme Solar Energy")."""
        special = {"saas": "Software", "retail_pos": "Retail Systems", "edtech": "Learning"}
        return special.get(self.name, self.name.replace("_", " ").title())


INDUSTRIES: tuple[Industry, ...] = (
    Industry(
        name='saas',
        products=(('CloudDesk CRM', 49, 149), ('PipelineIQ analytics', 99, 399), ('HelpHub ticketing', 29, 99)),
        price_unit='per seat per month',
        features=('automated lead scoring', 'a Salesforce integration', 'custom dashboards', 'single sign-on'),
        pains=('reps wasting hours on data entry', 'leads slipping through the cracks', 'no visibility into the pipeline', 'spreadsheets that never match'),
        benefits=('close deals faster', 'cut admin time in half', 'forecast accurately', 'onboard new reps in days'),
        competitors=('HubSpot', 'Pipedrive', 'Zoho'),
        stakeholders=('our CTO', 'the head of sales', 'procurement'),
        competition=0.8, price_sensitivity=0.5, authority=0.4,
    ),
    Industry(
        name='insurance',
        products=(('FamilyShield term life', 25, 90), ('HomeSafe policy', 60, 180), ('FleetCover auto', 300, 900)),
        price_unit='per month',
        features=('accident forgiveness', 'a bundled discount', '24/7 claims support', 'no medical exam'),
        pains=('premiums going up every year', 'a claim that took months to settle', 'gaps in the current cover', 'not knowing what is actually covered'),
        benefits=('protect the family', 'save on premiums', 'settle claims in days', 'sleep better at night'),
        competitors=('StateFarm', 'Geico', 'Allstate'),
        stakeholders=('my spouse', 'our broker', 'my financial advisor'),
        competition=0.7, price_sensitivity=0.7, authority=0.6,
    ),
    Industry(
        name='real_estate',
        products=(('a two-bedroom condo', 280000, 450000), ('a family home in Oakridge', 520000, 780000), ('a retail unit downtown', 900000, 1500000)),
        price_unit='total',
        features=('a renovated kitchen', 'a south-facing garden', 'a short commute', 'a good school district'),
        pains=('outgrowing the current place', 'rent going up again', 'a long commute', 'no space for a home office'),
        benefits=('build equity', 'get more space', "lock in today's rates", 'be closer to work'),
        competitors=('another listing on Maple Street', 'a new-build development', 'waiting for prices to drop'),
        stakeholders=('my partner', 'the bank', 'my parents'),
        competition=0.6, price_sensitivity=0.8, authority=0.5,
    ),
    Industry(
        name='automotive',
        products=(('the Aria hybrid sedan', 28000, 36000), ('the Terra SUV', 38000, 52000), ('the Volt EV hatchback', 31000, 42000)),
        price_unit='total',
        features=('adaptive cruise control', 'a ten-year battery warranty', 'all-wheel drive', 'a 360 camera'),
        pains=('an old car that keeps breaking down', 'fuel costs', 'not enough room for the kids', 'high repair bills'),
        benefits=('save on fuel', 'drive with peace of mind', 'get a lower monthly payment', 'upgrade safety'),
        competitors=('the dealer across town', 'a Toyota', 'a used car online'),
        stakeholders=('my wife', 'my husband', 'my bank'),
        competition=0.8, price_sensitivity=0.7, authority=0.6,
    ),
    Industry(
        name='telecom',
        products=(('Fiber 1000 business internet', 79, 249), ('the Unlimited 5G plan', 35, 85), ('a hosted phone system', 20, 45)),
        price_unit='per month',
        features=('a static IP', 'unlimited data', 'a 99.9% uptime guarantee', 'free installation'),
        pains=('dropped calls', 'slow uploads', 'a bill full of surprise fees', 'outages during busy hours'),
        benefits=('never drop a call', 'cut the bill', 'work from anywhere', 'get support that answers'),
        competitors=('Verizon', 'AT&T', 'Comcast'),
        stakeholders=('our office manager', 'IT', 'my business partner'),
        competition=0.9, price_sensitivity=0.8, authority=0.6,
    ),
    Industry(
        name='medical_devices',
        products=(('the CardioTrack monitor', 3000, 9000), ('a portable ultrasound unit', 15000, 40000), ('the SterilPro autoclave', 6000, 14000)),
        price_unit='per unit',
        features=('FDA clearance', 'EHR integration', 'a five-year service plan', 'battery operation'),
        pains=('equipment downtime', 'long patient wait times', 'compliance audits', 'staff training overhead'),
        benefits=('see more patients', 'reduce downtime', 'pass audits easily', 'improve outcomes'),
        competitors=('GE Healthcare', 'Philips', 'Siemens Healthineers'),
        stakeholders=('the purchasing committee', 'our chief physician', 'the hospital board'),
        competition=0.6, price_sensitivity=0.5, authority=0.2,
    ),
    Industry(
        name='wealth_management',
        products=(('a managed portfolio', 1500, 6000), ('a retirement planning package', 800, 2500), ('the robo-advisor premium tier', 120, 600)),
        price_unit='per year',
        features=('tax-loss harvesting', 'a dedicated advisor', 'quarterly reviews', 'low fees'),
        pains=('not knowing if retirement is on track', 'high fund fees', 'a portfolio that underperformed', 'no time to manage money'),
        benefits=('retire on time', 'reduce fees', 'grow savings steadily', 'stop worrying about markets'),
        competitors=('Vanguard', 'a local advisor', 'doing it myself'),
        stakeholders=('my spouse', 'my accountant', 'my father'),
        competition=0.7, price_sensitivity=0.5, authority=0.6,
    ),
    Industry(
        name='edtech',
        products=(('the LearnPath platform', 8, 20), ('a coding bootcamp seat', 6000, 14000), ('a tutoring package', 300, 900)),
        price_unit='per student',
        features=('adaptive lessons', 'progress reports for parents', 'certified instructors', 'job placement support'),
        pains=('students falling behind', 'teachers overloaded with grading', 'low course completion', 'a career that has stalled'),
        benefits=('raise test scores', 'save teachers time', 'land a better job', 'learn at their own pace'),
        competitors=('Khan Academy', 'Coursera', 'a local tutor'),
        stakeholders=('the principal', 'the school board', 'my parents'),
        competition=0.7, price_sensitivity=0.7, authority=0.4,
    ),
    Industry(
        name='industrial_equipment',
        products=(('the FlexCut CNC mill', 90000, 250000), ('a forklift fleet lease', 2000, 6000), ('the PackLine conveyor', 40000, 120000)),
        price_unit='per unit',
        features=('predictive maintenance', 'a two-year warranty', 'operator training', 'energy-efficient motors'),
        pains=('unplanned downtime', 'rising labour costs', 'quality defects', "an ageing line that can't keep up"),
        benefits=('increase throughput', 'cut maintenance costs', 'reduce scrap', 'pay back within two years'),
        competitors=('Haas', 'DMG Mori', 'a refurbished machine'),
        stakeholders=('the plant manager', 'our CFO', 'the owners'),
        competition=0.6, price_sensitivity=0.6, authority=0.3,
    ),
    Industry(
        name='retail_pos',
        products=(('the TillFlow POS', 59, 199), ('a self-checkout kiosk', 4000, 9000), ('InventoryPlus', 49, 149)),
        price_unit='per location per month',
        features=('contactless payments', 'real-time inventory', 'a loyalty program', 'offline mode'),
        pains=('long queues at peak hours', 'stock-outs', 'end-of-day reconciliation', 'card fees eating margins'),
        benefits=('serve customers faster', 'never run out of stock', 'close the day in minutes', 'bring customers back'),
        competitors=('Square', 'Shopify POS', 'Lightspeed'),
        stakeholders=('the store owner', 'our franchise HQ', 'my business partner'),
        competition=0.9, price_sensitivity=0.8, authority=0.6,
    ),
    Industry(
        name='travel',
        products=(('a corporate travel program', 5000, 30000), ('the Alpine ski package', 1800, 4500), ('a group incentive trip', 12000, 60000)),
        price_unit='per booking',
        features=('negotiated hotel rates', '24/7 travel support', 'flexible cancellation', 'duty-of-care tracking'),
        pains=('travel costs out of control', 'last-minute cancellations', 'travellers stranded with no support', 'expense reports'),
        benefits=('cut travel spend', 'keep travellers safe', 'book in minutes', 'reward the team'),
        competitors=('Expedia', 'Booking.com', 'our current agency'),
        stakeholders=('finance', 'HR', 'the CEO'),
        competition=0.8, price_sensitivity=0.6, authority=0.4,
    ),
    Industry(
        name='solar_energy',
        products=(('a rooftop solar system', 12000, 28000), ('a home battery', 8000, 15000), ('a commercial solar array', 80000, 300000)),
        price_unit='installed',
        features=('a 25-year panel warranty', 'net metering', 'a monitoring app', 'zero-down financing'),
        pains=('electricity bills going up', 'power cuts', 'sustainability targets', 'an old roof'),
        benefits=('cut the power bill', 'keep the lights on in outages', 'hit green targets', "raise the home's value"),
        competitors=('Tesla Energy', 'SunPower', 'a local installer'),
        stakeholders=('my spouse', 'the HOA', 'the landlord'),
        competition=0.7, price_sensitivity=0.7, authority=0.6,
    ),
    Industry(
        name='logistics',
        products=(('a freight management contract', 3000, 20000), ('last-mile delivery service', 2, 9), ('warehouse space', 8000, 40000)),
        price_unit='per month',
        features=('real-time tracking', 'same-day delivery', 'temperature control', 'an API for orders'),
        pains=('late shipments', 'damaged goods', 'no visibility of where orders are', 'peak-season capacity'),
        benefits=('deliver on time', 'cut shipping costs', 'scale for peak season', 'track every parcel'),
        competitors=('FedEx', 'DHL', 'our current 3PL'),
        stakeholders=('operations', 'the supply chain director', 'finance'),
        competition=0.8, price_sensitivity=0.6, authority=0.4,
    ),
    Industry(
        name='marketing_agency',
        products=(('a paid-search retainer', 3000, 12000), ('a brand refresh project', 15000, 60000), ('SEO content package', 1500, 5000)),
        price_unit='per month',
        features=('weekly reporting', 'a dedicated strategist', 'creative testing', 'landing page optimisation'),
        pains=('ad spend with nothing to show', 'a website nobody visits', 'an outdated brand', 'no time to post content'),
        benefits=('get more qualified leads', 'lower cost per acquisition', 'stand out from competitors', 'rank on page one'),
        competitors=('an in-house hire', 'a freelancer', 'a bigger agency'),
        stakeholders=('our CMO', 'the founders', 'the board'),
        competition=0.9, price_sensitivity=0.6, authority=0.5,
    ),
    Industry(
        name='home_improvement',
        products=(('a kitchen remodel', 18000, 60000), ('new windows', 6000, 20000), ('a roof replacement', 9000, 25000)),
        price_unit='total',
        features=('a lifetime warranty', 'energy-efficient glass', 'a fixed-price quote', 'financing options'),
        pains=('drafts and high heating bills', 'a leaking roof', 'a kitchen that is falling apart', 'contractors who never show up'),
        benefits=('lower heating bills', 'add value to the house', 'get it done before winter', 'enjoy the home again'),
        competitors=('Home Depot', 'a local contractor', 'doing it ourselves'),
        stakeholders=('my husband', 'my wife', 'the bank'),
        competition=0.7, price_sensitivity=0.8, authority=0.6,
    ),
)

INDUSTRY_NAMES: tuple[str, ...] = tuple(ind.name for ind in INDUSTRIES)
BY_NAME = {ind.name: ind for ind in INDUSTRIES}
