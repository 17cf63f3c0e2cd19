"""The worker's HTTP server around Faust's aiohttp driver: every answer JSON, bounded reads.

``driver`` is the Faust web driver the app uses; ``protocol`` answers what aiohttp's
parser refuses; ``middleware`` turns aiohttp's own errors into JSON and reads bodies
within a deadline; ``headers`` decodes the headers the views read; ``openapi`` serves
the description of the API.
"""
