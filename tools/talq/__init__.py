"""The TALQ 2.7.1 gateway (issue 17): the cloud-side service that lets a city's lighting CMS
see the fleet of cabinets through the TALQ Gateway API (docs/talq.md)."""
