"""Generate the synthetic leisure-events table used to demo and test the bundle.

Every row of ``training/sample_events.csv`` is invented: titles and descriptions are
assembled from templates and small word banks, with a fixed seed, so the file can be
rebuilt byte for byte and carries no real event, venue, person or licence question.
It exists so that the hierarchical classifier (taxonomy -> subtaxonomy) can be trained,
packaged and served end to end in demos and tests without any private data.

The table is deliberately not trivially separable: every description carries generic
sentences shared by all classes (tickets, access, parking, doors), some rows borrow the
vocabulary of a neighbouring class (a jazz brunch, a family concert, a museum night with
a DJ) while keeping one plausible label, a few titles are empty and a few descriptions
are a single sentence. About 15% are long listings (200-600 tokens) like real event pages:
the event's own sentences wrapped in paragraphs about the venue, the series, tickets and
access, with what the event is about sometimes only near the end.

Usage::

    python -m training.make_sample_events                      # training/sample_events.csv
    python -m training.make_sample_events --output /tmp/e.csv --rows 600
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from pathlib import Path

SEED = 2026
DEFAULT_ROWS = 1800
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "sample_events.csv"
COLUMNS = ("title", "description", "taxonomy", "subtaxonomy")

HARD_SHARE = 0.15  # rows that borrow a neighbouring class's vocabulary
SIBLING_SHARE = 0.3  # rows with one sentence from another leaf of the same taxonomy
GENERIC_TITLE_SHARE = 0.12
EMPTY_TITLE_SHARE = 0.05
SHORT_DESCRIPTION_SHARE = 0.05
MIN_WORDS, MAX_WORDS = 30, 90
LONG_SHARE = 0.15  # long listings: the event's own description inside paragraphs of practical text
LONG_WORDS = (150, 450)  # about 200-600 tokens with the embedded base's tokenizer

Leaf = tuple[str, str]
ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")  # "a" before a vowel becomes "an"

# Word banks shared by every template; a template names a bank as {bank}.
BANKS: dict[str, list[str]] = {
    "venue": [
        "the Corn Exchange", "the Old Library", "Harbour Hall", "the Lantern Rooms",
        "St Anne's Hall", "the Granary", "Millbrook Community Centre", "the Waterside Pavilion",
        "the Assembly Rooms", "the Foundry", "Northgate Arts Centre", "the Glasshouse",
    ],
    "district": [
        "Old Town", "Harbourside", "Northgate", "Millbrook", "Eastbank", "Kingsmead",
        "the Docklands", "Canal Quarter", "Southfield", "Hillcrest", "the Market District",
    ],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "time": ["10am", "11am", "noon", "2pm", "3.30pm", "6pm", "7pm", "7.30pm", "8pm", "9pm"],
    "price": ["£5", "£8", "£10", "£12", "£15", "£18", "£22", "£25", "£30", "£35"],
    "audience": [
        "all ages", "adults", "students", "families", "complete beginners", "seasoned regulars",
        "curious newcomers", "locals and visitors alike", "groups of friends", "over-60s",
    ],
    "organiser": [
        "the Riverside Arts Trust", "the Northgate Community Association", "Lantern Events",
        "the Harbourside Collective", "Old Town Friends", "the City Culture Office",
        "Millbrook Volunteers", "Open Doors Productions", "the Eastbank Partnership",
    ],
    "adj": [
        "relaxed", "lively", "intimate", "unforgettable", "friendly", "energetic", "cosy",
        "ambitious", "joyful", "laid-back", "spirited", "memorable", "popular", "brand-new",
    ],
    "Adj": [
        "Summer", "Winter", "Midweek", "Sunday", "Big", "Little", "Grand", "Secret",
        "Open", "Autumn", "Spring", "Late", "Community", "Annual",
    ],
    "name": [
        "Mara Quinn", "Theo Adebayo", "Lena Fischer", "Sam Okafor", "Ines Duarte",
        "Jonah Reyes", "Priya Raman", "Oskar Lind", "Hattie Moss", "Rafael Costa",
    ],
    "band": [
        "The Velvet Lanterns", "Copper Coast", "Night Ferry", "The Low Tides", "Paper Moons",
        "Northern Static", "The Hollow Oaks", "Saltwater Radio",
    ],
    "jazz_venue": ["the Blue Room", "Cellar 59", "the Green Note", "Smoky Joe's", "the Velvet Bar"],
    "composer": ["Mozart", "Beethoven", "Brahms", "Dvořák", "Schubert", "Haydn", "Bach", "Elgar"],
    "genre": ["indie", "folk", "rock", "soul", "electronic", "pop", "reggae", "blues"],
    "play": ["Hamlet", "A Doll's House", "The Seagull", "Twelfth Night", "Macbeth", "Our Town"],
    "opera": ["La Bohème", "The Magic Flute", "Carmen", "Tosca", "Don Giovanni", "Rigoletto"],
    "dance_style": ["contemporary", "flamenco", "tango", "ballet", "hip hop", "Bollywood"],
    "team": ["Harbourside Rovers", "Northgate United", "Millbrook Town", "Eastbank Athletic"],
    "distance": ["5k", "10k", "half marathon", "5-mile", "3k fun run"],
    "artist": ["Mara Quinn", "Ada Holm", "Kofi Mensah", "Yuki Sato", "Elsa Moreau", "Luca Bassi"],
    "topic": ["the Bronze Age", "the human brain", "steam power", "the river trade",
              "ocean life", "the night sky", "medieval medicine", "early flight"],
    "industry": ["wedding", "home and garden", "tech start-up", "careers", "craft and hobby",
                 "motor", "travel"],
    "wine": ["Rioja", "Burgundy", "natural wine", "English sparkling", "Riesling", "Malbec"],
    "cuisine": ["Korean", "Mexican", "Ethiopian", "Sicilian", "Lebanese", "Vietnamese", "Caribbean"],
    "dish": ["fresh pasta", "dumplings", "sourdough", "curry", "sushi", "tapas", "pastry"],
    "beer": ["IPA", "stout", "sour", "lager", "pale ale", "porter"],
    "craft": ["slime making", "robot building", "clay modelling", "kite making", "comic drawing"],
    "dj": ["DJ Kestrel", "Mx Volt", "DJ Halcyon", "Nova Rae", "the Basement Crew"],
    "music_style": ["house", "techno", "disco", "drum and bass", "garage", "afrobeats"],
    "river": ["the River Wend", "the estuary", "the canal", "the harbour", "the lake"],
    "trail": ["Beacon Ridge", "Gull Point", "Hollow Wood", "Sheepwash Fell", "Kestrel Edge"],
}

# Class profiles: title templates and class-specific sentences per leaf.
# Each taxonomy also has a few sentences shared by all of its leaves.
TAXONOMY: dict[str, dict[str, dict[str, list[str]]]] = {
    "music": {
        "concert": {
            "titles": ["{band} Live at {venue}", "{band} in Concert", "{Adj} Tour: {band} Live",
                       "An Evening with {band}", "{band} Plus Special Guests"],
            "lines": [
                "{band} bring their {genre} sound and a new album to {venue}.",
                "Expect big choruses, a full band and a support act from {district}.",
                "The {genre} group play songs from their latest record alongside older favourites.",
                "Support comes from a {adj} local {genre} act before the headline set.",
                "This is the only date of the tour in the city, with merch on sale at the venue.",
            ],
        },
        "jazz": {
            "titles": ["Late-Night Jazz at {jazz_venue}", "{name} Jazz Quartet", "Jazz Jam Session",
                       "{Adj} Jazz at {jazz_venue}", "Swing and Bebop Night"],
            "lines": [
                "The {name} quartet plays standards, bebop and a few originals at {jazz_venue}.",
                "Improvised solos, a double bass and brushed drums make for a {adj} set.",
                "Musicians are welcome to bring an instrument for the jam session after the break.",
                "Swing, bossa nova and Latin jazz from a trio of seasoned players.",
                "The saxophone and piano duo return with tunes by Monk and Ellington.",
            ],
        },
        "classical": {
            "titles": ["{composer} by Candlelight", "{composer} and {composer} Recital",
                       "Chamber Music at {venue}", "{Adj} Symphony Concert", "String Quartet Evening"],
            "lines": [
                "The chamber orchestra performs {composer}'s symphony and a piano concerto.",
                "A string quartet plays {composer} and {composer} in the candlelit hall.",
                "Soloist {name} joins the orchestra for a violin concerto.",
                "A pre-concert talk at {time} introduces the programme and the composers.",
                "The recital features sonatas for cello and piano performed by {name}.",
            ],
        },
        "festival": {
            "titles": ["{Adj} Sounds Festival", "{district} Music Festival", "{Adj} Fest Weekender",
                       "Three Stages in {district}", "{Adj} Beats Festival"],
            "lines": [
                "Three stages, more than thirty acts and a weekend camping field.",
                "Headliners {band} close the main stage on {weekday} night.",
                "Weekend wristbands include entry to all stages and the {genre} tent.",
                "The festival line-up mixes {genre}, {genre} and emerging local artists.",
                "Food trucks, a silent disco and an acoustic stage run between the main sets.",
            ],
        },
        "open mic": {
            "titles": ["Open Mic Night", "{district} Open Mic", "Songwriters' Open Mic",
                       "Open Stage at {venue}", "Acoustic Open Mic with {name}"],
            "lines": [
                "Sign up at the door for a ten-minute slot; guitar and keyboard provided.",
                "Singers, songwriters and spoken-word poets all get a turn at the mic.",
                "Host {name} keeps the list moving and plays a few songs to open the night.",
                "First-time performers are welcome and the crowd is famously supportive.",
                "Slots are first come, first served, so arrive early to put your name down.",
            ],
        },
    },
    "performing arts": {
        "theatre": {
            "titles": ["{play} at {venue}", "{play}: A New Production", "{Adj} Theatre: {play}",
                       "{play}, Reimagined for Today", "Rehearsed Reading of {play}"],
            "lines": [
                "A new production of {play} directed by {name} with a cast of eight.",
                "The play runs for two hours with one interval and contains strong language.",
                "The theatre company brings the classic script into present-day {district}.",
                "Critics called the staging bold and the lead performance {adj}.",
                "A post-show discussion with the director follows the {weekday} performance.",
            ],
        },
        "comedy": {
            "titles": ["Stand-Up Comedy Night", "{name}: Work in Progress", "Comedy Club at {venue}",
                       "{Adj} Laughs Comedy Showcase", "Improv Comedy Jam"],
            "lines": [
                "Four stand-up comedians and a compere deliver an evening of laughs.",
                "{name} tries out new material ahead of the Edinburgh Fringe.",
                "The improv troupe builds every scene from audience suggestions.",
                "Expect jokes about dating, family and life in {district}.",
                "The comedy line-up includes a headliner, two openers and a new act spot.",
            ],
        },
        "dance": {
            "titles": ["{dance_style} Dance Showcase", "{Adj} Dance Company Tour",
                       "{dance_style} Night at {venue}", "New Choreography by {name}", "Dance Double Bill"],
            "lines": [
                "Six dancers perform new {dance_style} choreography by {name}.",
                "The dance company presents a double bill of short pieces.",
                "The choreography blends {dance_style} with live percussion.",
                "A free warm-up class on stage lets the audience try a few steps.",
                "The piece explores memory and movement in a {adj} hour of dance.",
            ],
        },
        "opera": {
            "titles": ["{opera} at {venue}", "Opera in the Park: {opera}", "{opera} in Concert",
                       "{Adj} Opera Gala", "Opera Highlights with {name}"],
            "lines": [
                "The touring opera company stages {opera} with a live orchestra.",
                "Soprano {name} sings the title role, with English surtitles.",
                "The opera gala features famous arias and duets from the repertoire.",
                "Sung in Italian with surtitles, the production lasts three hours.",
                "A chorus of forty and a full pit orchestra bring the score to life.",
            ],
        },
    },
    "sports": {
        "football": {
            "titles": ["{team} vs {team}", "Five-a-Side Football League", "{Adj} Football Tournament",
                       "Walking Football in {district}", "{team} Home Match"],
            "lines": [
                "{team} host {team} in a league match at the community ground.",
                "Teams of five play twenty-minute games on the floodlit pitches.",
                "Kick-off is at {time}; home supporters sit in the north stand.",
                "The football tournament is open to mixed teams, with a trophy for the winners.",
                "Bring shin pads and boots suitable for an artificial pitch.",
            ],
        },
        "running": {
            "titles": ["The {district} {distance} Race", "Parkrun at {district} Park", "{Adj} Night Run",
                       "Run Club: {distance} Training", "Charity {distance} Race"],
            "lines": [
                "The {distance} course loops twice around the park on flat paths.",
                "Chip timing, a medal and a water station at halfway are included.",
                "Pacers run at several target times, so set a personal best.",
                "Runners of every pace are welcome and walkers are never last.",
                "The run club meets at the gates for a warm-up jog and intervals.",
            ],
        },
        "cycling": {
            "titles": ["{Adj} Sportive Ride", "Gravel Ride from {district}", "Cycle Club Social Ride",
                       "{district} Criterium Race", "Learn to Ride: Bike Skills"],
            "lines": [
                "The sportive offers routes of 50 and 100 kilometres with feed stations.",
                "Riders meet at the bike shop in {district} for a no-drop social ride.",
                "Helmets are compulsory and bikes should be in good working order.",
                "The criterium circuit is closed to traffic for an afternoon of racing.",
                "A mechanic is on hand to fix punctures and tune gears before the ride.",
            ],
        },
        "yoga": {
            "titles": ["Sunrise Yoga in {district}", "Vinyasa Flow with {name}", "{Adj} Yoga Retreat Day",
                       "Gentle Yoga for Beginners", "Candlelit Yin Yoga"],
            "lines": [
                "The yoga class moves through a vinyasa flow and ends with relaxation.",
                "Teacher {name} leads a gentle session focused on breath and balance.",
                "Bring a mat and a blanket; blocks and straps are provided.",
                "The session suits beginners and includes a guided meditation.",
                "Stretch, breathe and unwind with slow yin poses held for several minutes.",
            ],
        },
        "climbing": {
            "titles": ["Bouldering Competition at {venue}", "Intro to Indoor Climbing", "{Adj} Boulder Bash",
                       "Climbing Wall Taster at {venue}", "Women's Climbing Social"],
            "lines": [
                "Forty new boulder problems are set for the climbing competition.",
                "The taster covers harness, knots and belaying on the climbing wall.",
                "Climbing shoes and chalk are available to hire at the desk.",
                "Routes range from easy slabs to steep overhangs for experienced climbers.",
                "Instructors coach technique on the bouldering wall in small groups.",
            ],
        },
    },
    "exhibitions": {
        "art exhibition": {
            "titles": ["{artist}: New Paintings", "{Adj} Open Art Exhibition", "Private View: {artist}",
                       "Colour and Form at {venue}", "Sculpture Show by {artist}"],
            "lines": [
                "The exhibition brings together forty paintings and drawings by {artist}.",
                "Large sculptures fill the main gallery, with prints in the side rooms.",
                "The private view on {weekday} includes a talk by the artist.",
                "The show traces the painter's move from landscape to abstraction.",
                "Curated by {name}, the exhibition runs in the gallery for six weeks.",
            ],
        },
        "photography": {
            "titles": ["{artist}: Photographs", "{Adj} Photography Prize Show",
                       "Street Photography of {district}", "Through the Lens at {venue}",
                       "Black and White Photography Exhibition"],
            "lines": [
                "Sixty photographs document everyday life in {district} over a decade.",
                "The photography prize shortlist is shown in large-format prints.",
                "Black and white portraits by {artist} line the gallery walls.",
                "The photographer shot the series on film with a medium-format camera.",
                "A darkroom demonstration accompanies the photo exhibition each {weekday}.",
            ],
        },
        "science and history": {
            "titles": ["Discovering {topic}", "{topic}: A Museum Exhibition", "Lates at the Museum",
                       "Objects from {topic}", "{Adj} Science Exhibition"],
            "lines": [
                "The museum exhibition explores {topic} through objects and models.",
                "Original artefacts sit beside interactive displays and archive film.",
                "Curators explain how {topic} shaped the history of the region.",
                "Hands-on science stations let visitors test ideas for themselves.",
                "Fossils, maps and instruments are displayed in the museum's east wing.",
            ],
        },
        "trade fair": {
            "titles": ["{Adj} {industry} Show", "The {industry} Fair", "{industry} Expo at {venue}",
                       "{district} {industry} Fair", "Meet the Makers: {industry} Expo"],
            "lines": [
                "Over a hundred exhibitors show the latest in {industry} products and services.",
                "The expo floor has stands, live demonstrations and a seminar programme.",
                "Trade visitors can book meetings with exhibitors in advance.",
                "The fair is the largest {industry} event in the region.",
                "Free seminars cover trends, suppliers and new products each hour.",
            ],
        },
    },
    "food and drink": {
        "wine tasting": {
            "titles": ["{wine} Wine Tasting", "Wine Flight: Six {wine} Wines", "{Adj} Wine Tasting Evening",
                       "Meet the Winemaker", "Sip and Learn: {wine}"],
            "lines": [
                "Taste six wines from {wine} producers, guided by sommelier {name}.",
                "The winemaker explains grapes, vineyards and vintages glass by glass.",
                "Cheese and charcuterie are served alongside the wine flight.",
                "Learn to swirl, sniff and spot the difference between old and new world wines.",
                "Bottles tasted on the night are available to buy at a discount.",
            ],
        },
        "street food market": {
            "titles": ["{district} Street Food Market", "Night Market at {venue}", "{Adj} Food Market",
                       "{cuisine} Street Food Feast", "Street Food Friday"],
            "lines": [
                "Twenty street food traders serve {cuisine}, {cuisine} and vegan dishes.",
                "The night market fills the square with stalls, fairy lights and food vans.",
                "Traders sell {dish}, grilled skewers and fresh doughnuts.",
                "Bring an appetite and cash for the smaller food stalls.",
                "Local producers sell cheese, bread and preserves at the market.",
            ],
        },
        "cooking class": {
            "titles": ["Cooking Class: {dish}", "{cuisine} Cookery Workshop", "Learn to Make {dish}",
                       "Chef's Table Masterclass", "{Adj} Baking Class"],
            "lines": [
                "Chef {name} teaches you to make {dish} from scratch in a hands-on cooking class.",
                "Each cook gets a station, ingredients and an apron to take home.",
                "The class covers knife skills, {cuisine} spices and plating.",
                "You eat what you cook at the end of the class with a glass of wine.",
                "Recipes are emailed afterwards so you can cook the dishes at home.",
            ],
        },
        "craft beer": {
            "titles": ["{district} Craft Beer Festival", "Tap Takeover at {venue}", "Brewery Tour and Tasting",
                       "{Adj} Beer Festival", "Meet the Brewer: {beer} Night"],
            "lines": [
                "Forty craft beers on tap, from hazy {beer} to barrel-aged {beer}.",
                "The brewer leads a tour of the brewhouse followed by a tasting.",
                "The beer festival includes cider, perry and alcohol-free options.",
                "Tokens buy third-pint pours so you can try more beers.",
                "The taproom pours limited releases from four local breweries.",
            ],
        },
        "supper club": {
            "titles": ["{cuisine} Supper Club", "Secret Supper Club at {venue}", "{Adj} Brunch Club",
                       "Five-Course Tasting Menu", "Long Table Supper in {district}"],
            "lines": [
                "Guests share a long table for a five-course {cuisine} tasting menu.",
                "The supper club menu changes monthly and is served at a secret location.",
                "Brunch includes pastries, eggs, pancakes and bottomless coffee.",
                "The chef introduces each course and the seasonal ingredients behind it.",
                "Dietary requirements can be catered for if mentioned when booking.",
            ],
        },
    },
    "family": {
        "kids workshop": {
            "titles": ["Kids' {craft} Workshop", "Little Makers: {craft}", "{Adj} Kids' Science Club",
                       "Half-Term Workshop for Kids", "Junior Coders Club"],
            "lines": [
                "Children aged 6 to 11 try {craft} with friendly workshop leaders.",
                "Every child takes home what they make, so expect sticky fingers.",
                "The kids' workshop suits ages five and up; adults must stay on site.",
                "Materials are provided and aprons are available for messy activities.",
                "Young makers learn new skills through games and small projects.",
            ],
        },
        "puppet show": {
            "titles": ["The Little Red Puppet Show", "Puppets at {venue}", "{Adj} Puppet Theatre",
                       "Marionette Magic for Kids", "Shadow Puppet Storytime"],
            "lines": [
                "Hand-made puppets tell a fairy tale for children aged three and up.",
                "The marionette show lasts forty-five minutes with songs to join in.",
                "After the show, children can meet the puppeteers and the puppets.",
                "Shadow puppets and a story narrator bring the picture book to life.",
                "Little ones can sit on cushions at the front of the puppet theatre.",
            ],
        },
        "family day": {
            "titles": ["{Adj} Family Fun Day", "Family Day in {district} Park", "Teddy Bears' Picnic",
                       "{district} Family Festival", "Family Open Day at {venue}"],
            "lines": [
                "The family fun day has face painting, a bouncy castle and games.",
                "Bring the whole family for storytelling, crafts and a treasure hunt.",
                "Parents, grandparents and children can enjoy a picnic on the lawn.",
                "Baby-changing facilities and buggy parking are available on site.",
                "Under-fives go free and there is a quiet tent for toddlers.",
            ],
        },
    },
    "nightlife": {
        "club night": {
            "titles": ["{music_style} Club Night", "{dj} All Night Long", "{Adj} Warehouse Party",
                       "{music_style} Til Late at {venue}", "{dj} and Friends"],
            "lines": [
                "{dj} plays {music_style} from 10pm until 4am on a big sound system.",
                "The club night returns to the warehouse with two rooms of {music_style}.",
                "Resident DJs warm up the dance floor before the headline set.",
                "Over-18s only; ID is required on entry and the dress code is relaxed.",
                "Expect lasers, smoke and a crowd that dances until closing time.",
            ],
        },
    },
    "tours and outdoors": {
        "walking tour": {
            "titles": ["Hidden {district} Walking Tour", "Ghost Walk of Old Town", "{Adj} Heritage Walk",
                       "Guided Walk: Secrets of {district}", "Street Art Walking Tour"],
            "lines": [
                "A local guide leads a walking tour through the lanes of {district}.",
                "The tour covers two miles at a gentle pace with stops at historic buildings.",
                "Hear stories of merchants, smugglers and ghosts on the guided walk.",
                "The walk meets outside the town hall and ends near {district} station.",
                "Wear comfortable shoes; the guided tour goes ahead in light rain.",
            ],
        },
        "hiking": {
            "titles": ["Guided Hike to {trail}", "{Adj} Hill Walk", "Sunrise Hike on {trail}",
                       "Woodland Hike from {district}", "Ridge Trek: {trail}"],
            "lines": [
                "The guided hike climbs {trail} for views across the valley.",
                "The route is eight miles with steep sections and a picnic stop.",
                "Walking boots, waterproofs and a packed lunch are essential.",
                "The hiking group sets off from the car park at {time} sharp.",
                "A qualified mountain leader navigates the trail and the open fell.",
            ],
        },
        "boat trip": {
            "titles": ["Cruise on {river}", "{Adj} Boat Trip", "Sunset Cruise from {district}",
                       "Seal-Spotting Boat Trip", "Kayak Tour of {river}"],
            "lines": [
                "The boat leaves the pier for a ninety-minute cruise along {river}.",
                "Passengers can spot seals and seabirds from the open deck.",
                "The skipper gives a commentary on the history of the waterfront.",
                "Life jackets are provided and the boat has a covered cabin.",
                "The kayak tour paddles along {river} with an experienced guide.",
            ],
        },
        "stargazing": {
            "titles": ["Stargazing on {trail}", "Dark Sky Night", "{Adj} Stargazing Evening",
                       "Meteor Shower Watch", "Telescope Night with {name}"],
            "lines": [
                "Astronomers set up telescopes to view planets, the moon and star clusters.",
                "Away from city lights, the dark sky site reveals the Milky Way.",
                "A guide points out constellations with a laser pointer.",
                "Dress warmly; the stargazing session is cancelled if cloud cover is heavy.",
                "Binoculars are welcome, and red torches help protect night vision.",
            ],
        },
    },
}

# Sentences each leaf of a taxonomy may use, blurring leaves within a taxonomy.
TAXONOMY_LINES: dict[str, list[str]] = {
    "music": [
        "The performance features live music from {time} with a short interval.",
        "Expect a {adj} set and plenty of songs to sing along to.",
        "The sound system has been upgraded, and earplugs are available at the bar.",
    ],
    "performing arts": [
        "The performance runs for about ninety minutes on stage at {venue}.",
        "Latecomers may not be admitted until a suitable break in the show.",
        "The cast and crew are drawn from across {district}.",
    ],
    "sports": [
        "Changing rooms and showers are available before and after the session.",
        "Participants should bring water and wear suitable sportswear.",
        "A {adj} warm-up is led by qualified coaches before the start.",
    ],
    "exhibitions": [
        "The exhibition is open daily from {time}, with late opening on {weekday}.",
        "Guided tours of the gallery run every hour and are included with entry.",
        "The catalogue and postcards are on sale in the shop.",
    ],
    "food and drink": [
        "Vegetarian and vegan options are available throughout.",
        "Drinks are available from the bar, with soft drinks for designated drivers.",
        "Please tell us about any allergies when you book.",
    ],
    "family": [
        "Children must be accompanied by an adult at all times.",
        "Activities are designed for kids, but grown-ups are welcome to join in.",
        "Buggies can be left at the entrance and there is a family room.",
    ],
    "nightlife": [
        "Drinks are served at the bar until late.",
        "Re-entry is not permitted after midnight.",
    ],
    "tours and outdoors": [
        "The activity takes place outdoors, so dress for the weather.",
        "Group sizes are small, so booking ahead is recommended.",
        "Meet at the visitor centre in {district} ten minutes before the start.",
    ],
}

# Sentences any class may use: logistics that carry no signal about the label.
GENERIC_LINES: list[str] = [
    "Tickets cost {price} in advance and a little more on the door.",
    "Tickets are {price}, with concessions for students and over-60s.",
    "Doors open at {time} and the event starts thirty minutes later.",
    "The venue is step-free and has an accessible toilet.",
    "Parking is limited, so please use public transport where possible.",
    "The nearest bus stop is a five-minute walk away in {district}.",
    "Organised by {organiser}, the event is suitable for {audience}.",
    "Booking is essential as places are limited.",
    "Free entry, but donations to {organiser} are welcome.",
    "Join us on {weekday} for a {adj} afternoon in {district}.",
    "A {adj} night out for {audience} in the heart of {district}.",
    "Refreshments are available and there is a cloakroom near the entrance.",
    "Assistance dogs are welcome and a hearing loop is fitted.",
    "The event is held at {venue} and finishes by 10pm.",
    "Don't miss this {adj} event, now in its fifth year.",
    "Follow {organiser} online for updates and future dates.",
    "Group discounts are available for parties of eight or more.",
    "This {weekday} event often sells out, so book early.",
]

# Practical paragraphs of long listings: true of any event, so they carry no class.
LONG_LINES: list[str] = [
    "{venue} is a short walk from the main station and is served by several night buses.",
    "Please arrive in good time: latecomers are admitted at a suitable break and cannot always be seated.",
    "Tickets are non-refundable, but they can be transferred to a friend by contacting {organiser} "
    "at least 24 hours before the start.",
    "If the event is cancelled or postponed, ticket holders are contacted by email and offered a refund "
    "or a place on the new date.",
    "The building has a lift to every floor, wheelchair spaces can be booked with your ticket, and "
    "companions of disabled visitors go free.",
    "Large bags, glass bottles and professional cameras are not allowed inside; a small cloakroom is "
    "available for a fee.",
    "Photography without flash is welcome for personal use, but please do not film the whole event.",
    "{organiser} is a not-for-profit group run by volunteers in {district}, and every ticket helps "
    "keep the programme going.",
    "Our season runs from September to June, with new dates announced every month on our website and "
    "in the free newsletter.",
    "Food and drinks can be bought at the bar before the start and during the break; card payment only.",
    "Children under twelve must be accompanied by an adult, and age limits are checked at the door.",
    "We ask everyone to respect our code of conduct: harassment of any kind is not tolerated and our "
    "staff wear orange lanyards if you need help.",
    "Bike racks are available outside the main entrance, and the car park closes one hour after the end.",
    "Gift vouchers for any event in the season can be bought online or at the box office.",
    "Volunteers are always welcome: ask at the desk if you would like to help with future dates.",
    "Lost property is kept for thirty days and can be collected from the box office on weekdays.",
    "This event is part of the {district} community programme, supported by local businesses and "
    "residents who give their time.",
    "A quiet room is available throughout for anyone who needs a break from the crowd.",
]

# Titles that say nothing about the class.
GENERIC_TITLES: list[str] = [
    "{Adj} Night at {venue}", "An Evening at {venue}", "{Adj} Gathering in {district}",
    "{Adj} Special at {venue}", "{weekday} in {district}", "{Adj} Season Opener",
    "Something {Adj} in {district}", "{Adj} Weekend at {venue}",
]

# Hard rows: (labelled leaf, leaf whose vocabulary it borrows, hybrid titles).
HARD_PAIRS: list[tuple[Leaf, Leaf, list[str]]] = [
    (("food and drink", "supper club"), ("music", "jazz"),
     ["Jazz Brunch at {jazz_venue}", "Sunday Jazz Brunch", "Brunch and Bebop"]),
    (("music", "classical"), ("family", "family day"),
     ["Family Concert: Meet the Orchestra", "Classical Music for Little Ears", "Family Proms in the Park"]),
    (("sports", "yoga"), ("tours and outdoors", "hiking"),
     ["Outdoor Yoga Hike on {trail}", "Yoga and Hike Morning", "Hilltop Yoga Walk"]),
    (("exhibitions", "science and history"), ("nightlife", "club night"),
     ["Museum Lates with {dj}", "Silent Disco at the Museum", "Dinosaurs After Dark"]),
    (("performing arts", "comedy"), ("food and drink", "craft beer"),
     ["Comedy Night at the Taproom", "Pints and Punchlines", "Stand-Up in the Brewery"]),
    (("music", "open mic"), ("food and drink", "craft beer"),
     ["Open Mic at the Brewery Taproom", "Pub Open Mic Night", "Songs and Pints"]),
    (("sports", "cycling"), ("tours and outdoors", "walking tour"),
     ["Heritage Bike Tour of {district}", "Guided Cycle Tour", "History by Bike"]),
    (("food and drink", "wine tasting"), ("exhibitions", "art exhibition"),
     ["Sip and Paint Evening", "Wine and Watercolours", "Art and Wine Night"]),
    (("nightlife", "club night"), ("performing arts", "dance"),
     ["Dance Floor Social: {music_style}", "Disco Dance Party", "Dance All Night Long"]),
    (("family", "puppet show"), ("performing arts", "opera"),
     ["Puppet Opera for Kids", "The Magic Flute with Puppets", "Opera Puppets for Little Ones"]),
    (("tours and outdoors", "boat trip"), ("music", "jazz"),
     ["Jazz Cruise on {river}", "Sunset Jazz Boat", "The Riverboat Shuffle Cruise"]),
    (("tours and outdoors", "stargazing"), ("exhibitions", "science and history"),
     ["Planetarium and Stargazing Night", "Astronomy Talk and Telescopes", "Space Science Night"]),
    (("sports", "running"), ("food and drink", "craft beer"),
     ["Brewery Run and Pint", "Run Club and Pints", "Beer Mile Challenge"]),
    (("exhibitions", "photography"), ("tours and outdoors", "walking tour"),
     ["Photo Walk Through {district}", "Photography Walk at Dawn", "Street Photography Tour"]),
    (("family", "kids workshop"), ("sports", "football"),
     ["Kids' Football Skills Camp", "Mini Kickers Workshop", "Junior Football Fun"]),
    (("music", "festival"), ("food and drink", "street food market"),
     ["Food and Music Festival", "Street Food and Sounds", "Feast Fest in {district}"]),
    (("performing arts", "dance"), ("sports", "yoga"),
     ["Dance and Movement Workshop", "Moving Bodies: Dance Class", "Stretch and Dance"]),
    (("family", "family day"), ("tours and outdoors", "walking tour"),
     ["Family Nature Trail", "Family Treasure Trail Walk", "Bug Hunt for Families"]),
    (("tours and outdoors", "hiking"), ("sports", "running"),
     ["Trail Hike and Run", "The Fell Challenge Hike", "Ridge Run and Walk"]),
    (("performing arts", "theatre"), ("family", "puppet show"),
     ["Family Theatre: The Snow Queen", "Christmas Panto at {venue}", "Storybook Theatre for Families"]),
]


def fill(template: str, rng: random.Random) -> str:
    """Fill every {bank} slot of a template with a random entry of that word bank."""
    parts = template.split("{")
    out = [parts[0]]
    for part in parts[1:]:
        bank, rest = part.split("}", 1)
        out.append(rng.choice(BANKS[bank]) + rest)
    return ARTICLE.sub(r"\1n ", "".join(out))


def leaves() -> list[Leaf]:
    """All (taxonomy, subtaxonomy) pairs in declaration order."""
    return [(tax, sub) for tax, subs in TAXONOMY.items() for sub in subs]


def class_counts(total: int, rng: random.Random) -> dict[Leaf, int]:
    """Split exactly ``total`` rows over the leaves, unevenly (weights drawn from 40 to 80).

    Every leaf gets at least one row; the rest is shared by weight, largest remainder first.
    """
    all_leaves = leaves()
    weights = [rng.uniform(40, 80) for _ in all_leaves]
    shares = [w * (total - len(all_leaves)) / sum(weights) for w in weights]
    counts = {leaf: 1 + int(share) for leaf, share in zip(all_leaves, shares)}
    by_remainder = sorted(range(len(all_leaves)), key=lambda i: int(shares[i]) - shares[i])
    for i in by_remainder[: total - sum(counts.values())]:
        counts[all_leaves[i]] += 1
    return counts


def word_count(sentences: list[str]) -> int:
    """Number of whitespace-separated words over all sentences."""
    return sum(len(s.split()) for s in sentences)


def describe(leaf: Leaf, borrowed: Leaf | None, rng: random.Random) -> str:
    """Build a 30-90 word description of 2-5 sentences for ``leaf``.

    A hard row (``borrowed`` given) mixes in sentences from the neighbouring leaf.
    """
    tax, sub = leaf
    own_lines = TAXONOMY[tax][sub]["lines"]
    if borrowed is None:
        specific = rng.sample(own_lines, rng.choice((1, 1, 2, 2, 3)))
    else:
        specific = rng.sample(TAXONOMY[borrowed[0]][borrowed[1]]["lines"], rng.choice((1, 2)))
        specific.append(rng.choice(own_lines if rng.random() < 0.5 else TAXONOMY_LINES[tax]))
    siblings = [s for s in TAXONOMY[tax] if s != sub]
    if siblings and rng.random() < SIBLING_SHARE:
        specific.append(rng.choice(TAXONOMY[tax][rng.choice(siblings)]["lines"]))
    shared = rng.sample(TAXONOMY_LINES[tax], rng.choice((0, 1, 1)))
    generic = rng.sample(GENERIC_LINES, 4)
    body = specific + shared
    rng.shuffle(body)
    sentences = [fill(s, rng) for s in body]
    for line in generic:
        if len(sentences) >= 2 and word_count(sentences) >= MIN_WORDS and rng.random() < 0.5:
            break
        if len(sentences) == 5:
            break
        sentences.append(fill(line, rng))
    while word_count(sentences) > MAX_WORDS:
        sentences.pop()
    return " ".join(sentences)


def lengthen(description: str, rng: random.Random) -> str:
    """A long listing: the description among paragraphs of practical text.

    Half of them put the description last, after all the practical text, so a model that
    reads only the first tokens misses what the event is about; the rest put it anywhere.
    """
    target = rng.randint(*LONG_WORDS)
    practical: list[str] = []
    lines = LONG_LINES + GENERIC_LINES
    while len(description.split()) + word_count(practical) < target:
        practical.append(fill(rng.choice(lines), rng))
    cut = len(practical) if rng.random() < 0.5 else rng.randint(0, len(practical))
    return " ".join([*practical[:cut], description, *practical[cut:]])


def make_row(leaf: Leaf, rng: random.Random,
             pairs: dict[Leaf, list[tuple[Leaf, list[str]]]]) -> dict[str, str]:
    """One event row for ``leaf``: plain, hard (borrowed vocabulary), short or untitled."""
    tax, sub = leaf
    titles = TAXONOMY[tax][sub]["titles"]
    borrowed: Leaf | None = None
    if leaf in pairs and rng.random() < HARD_SHARE * len(leaves()) / len(pairs):
        borrowed, hybrid_titles = rng.choice(pairs[leaf])
        if rng.random() < 0.5:
            titles = hybrid_titles
        else:
            titles = TAXONOMY[borrowed[0]][borrowed[1]]["titles"]
    if rng.random() < SHORT_DESCRIPTION_SHARE:
        pool = TAXONOMY[borrowed[0]][borrowed[1]]["lines"] if borrowed else TAXONOMY[tax][sub]["lines"]
        description = fill(rng.choice(pool), rng)
    else:
        description = describe(leaf, borrowed, rng)
    if rng.random() < LONG_SHARE:
        description = lengthen(description, rng)
    if rng.random() < GENERIC_TITLE_SHARE:
        titles = GENERIC_TITLES
    title = "" if rng.random() < EMPTY_TITLE_SHARE else fill(rng.choice(titles), rng)
    return {"title": title, "description": description, "taxonomy": tax, "subtaxonomy": sub}


def generate(total: int, seed: int = SEED) -> list[dict[str, str]]:
    """All rows, shuffled deterministically."""
    rng = random.Random(seed)
    pairs: dict[Leaf, list[tuple[Leaf, list[str]]]] = {}
    for leaf, borrowed, titles in HARD_PAIRS:
        pairs.setdefault(leaf, []).append((borrowed, titles))
    rows = [make_row(leaf, rng, pairs)
            for leaf, n in class_counts(total, rng).items() for _ in range(n)]
    rng.shuffle(rows)
    return rows


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    """Write the rows as UTF-8 CSV with a header and ``\\n`` line endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="CSV file to write (default: training/sample_events.csv)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"number of rows to generate (default: {DEFAULT_ROWS})")
    args = parser.parse_args()
    if args.rows < len(leaves()):
        parser.error(f"--rows must be at least {len(leaves())} (one per subtaxonomy)")
    rows = generate(args.rows)
    write_csv(rows, args.output)
    print(f"wrote {len(rows)} rows, {len(TAXONOMY)} taxonomies, {len(leaves())} subtaxonomies "
          f"to {args.output}")


if __name__ == "__main__":
    main()
